//! Caller lines (线路) and the users they are allocated to (SPEC §1).

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserType {
    Partner,
    Customer,
    SubAccount,
}

impl UserType {
    /// The `users.type` column; the database constrains it to these three values.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "partner" => Some(Self::Partner),
            "customer" => Some(Self::Customer),
            "sub_account" => Some(Self::SubAccount),
            _ => None,
        }
    }

    /// The `type_note` partners see.
    pub fn note(self) -> &'static str {
        match self {
            Self::Partner => "伙伴",
            Self::Customer => "客户",
            Self::SubAccount => "子账户",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineUser {
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub user_type: UserType,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerLine {
    pub id: Uuid,
    pub name: String,
    /// `None` while the line is unallocated.
    pub user: Option<LineUser>,
    pub call_line: i32,
    pub deadline_at: Option<DateTime<Utc>>,
    /// Allocated seconds of use, counted from `begin_at`.
    pub available_time: i64,
    pub begin_at: Option<DateTime<Utc>>,
    pub caller_number: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub description_server: Option<String>,
    pub call_number: Option<String>,
}

impl CallerLine {
    /// `begin_at + available_time`; `None` before use begins (or past the calendar's end).
    pub fn available_at(&self) -> Option<DateTime<Utc>> {
        let begin_at = self.begin_at?;
        begin_at.checked_add_signed(TimeDelta::try_seconds(self.available_time)?)
    }

    /// When service stops: the earlier of `available_at` and `deadline_at`, where a missing one
    /// does not bound it; `None` means unbounded. The view `caller_line_service` says the same.
    pub fn service_end(&self) -> Option<DateTime<Utc>> {
        match (self.available_at(), self.deadline_at) {
            (Some(available_at), Some(deadline_at)) => Some(available_at.min(deadline_at)),
            (available_at, deadline_at) => available_at.or(deadline_at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn line(begin_at: Option<i64>, available_time: i64, deadline_at: Option<i64>) -> CallerLine {
        let at = |seconds: i64| Utc.timestamp_opt(seconds, 0).unwrap();
        CallerLine {
            id: Uuid::nil(),
            name: "l".into(),
            user: None,
            call_line: 1,
            deadline_at: deadline_at.map(at),
            available_time,
            begin_at: begin_at.map(at),
            caller_number: "c".into(),
            created_at: at(0),
            updated_at: at(0),
            description_server: None,
            call_number: None,
        }
    }

    #[test]
    fn available_at_adds_the_allocated_seconds_to_the_start() {
        let l = line(Some(1_000), 500, None);
        assert_eq!(l.available_at().unwrap().timestamp(), 1_500);
        assert_eq!(line(None, 500, None).available_at(), None);
        assert_eq!(line(Some(1_000), i64::MAX, None).available_at(), None);
    }

    #[test]
    fn service_ends_at_the_earlier_bound_and_a_missing_bound_is_unbounded() {
        let end = |l: CallerLine| l.service_end().map(|t| t.timestamp());
        assert_eq!(end(line(Some(0), 100, Some(50))), Some(50));
        assert_eq!(end(line(Some(0), 100, Some(500))), Some(100));
        assert_eq!(end(line(None, 100, Some(500))), Some(500));
        assert_eq!(end(line(Some(0), 100, None)), Some(100));
        assert_eq!(end(line(None, 100, None)), None);
    }

    #[test]
    fn type_notes_are_the_vendor_words() {
        assert_eq!(UserType::parse("partner").unwrap().note(), "伙伴");
        assert_eq!(UserType::parse("customer").unwrap().note(), "客户");
        assert_eq!(UserType::parse("sub_account").unwrap().note(), "子账户");
        assert_eq!(UserType::parse("admin"), None);
    }
}
