//! Times as the vendor writes them: `YYYY-MM-DD HH:MM:SS`, wall-clock time in the display zone
//! (SPEC §2).

use chrono::{DateTime, Datelike, Timelike, Utc};
use chrono_tz::Tz;
use serde::{Serialize, Serializer};

/// `YYYY-MM-DD HH:MM:SS` wall-clock time in the display zone.
pub struct WallClock(DateTime<Tz>);

impl WallClock {
    pub fn new(instant: DateTime<Utc>, zone: Tz) -> Self {
        Self(instant.with_timezone(&zone))
    }

    pub fn of(instant: Option<DateTime<Utc>>, zone: Tz) -> Option<Self> {
        instant.map(|instant| Self::new(instant, zone))
    }
}

/// Written digit by digit into a fixed buffer: a response holds up to 600 of these, and both a
/// strftime pattern and `core::fmt` per field were measurable shares of the service's CPU
/// (`perf`, bench/).
impl Serialize for WallClock {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let t = self.0.naive_local();
        let Ok(year) = u32::try_from(t.year()) else {
            return serializer.collect_str(self);
        };
        if year > 9999 {
            return serializer.collect_str(self);
        }
        let mut text = *b"0000-00-00 00:00:00";
        for (at, width, value) in [
            (0, 4, year),
            (5, 2, t.month()),
            (8, 2, t.day()),
            (11, 2, t.hour()),
            (14, 2, t.minute()),
            (17, 2, t.second()),
        ] {
            let mut rest = value;
            for digit in text[at..at + width].iter_mut().rev() {
                *digit = b'0' + (rest % 10) as u8;
                rest /= 10;
            }
        }
        serializer.serialize_str(std::str::from_utf8(&text).expect("ASCII digits"))
    }
}

/// The general form, for years outside 0..=9999 (no real line has one).
impl std::fmt::Display for WallClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = self.0.naive_local();
        write!(
            f,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            t.year(),
            t.month(),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn wall_clock_is_zero_padded_local_time() {
        let instant = Utc.with_ymd_and_hms(2023, 12, 31, 16, 5, 9).unwrap();
        let shown = WallClock::of(Some(instant), chrono_tz::Asia::Shanghai).unwrap();
        assert_eq!(shown.to_string(), "2024-01-01 00:05:09");
        assert_eq!(
            serde_json::to_string(&shown).unwrap(),
            "\"2024-01-01 00:05:09\""
        );
    }

    #[test]
    fn every_year_is_written_as_the_general_form_writes_it() {
        for year in [-1, 0, 7, 999, 1970, 9999, 10_000, 200_000] {
            let instant = Utc.with_ymd_and_hms(year, 2, 3, 4, 5, 6).unwrap();
            let shown = WallClock::of(Some(instant), chrono_tz::UTC).unwrap();
            assert_eq!(
                serde_json::to_string(&shown).unwrap(),
                format!("\"{shown}\""),
                "{year}"
            );
        }
    }
}
