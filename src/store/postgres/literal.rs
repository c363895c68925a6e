//! A statement with its values written into its text, for the simple protocol: one message, one
//! round trip, whatever sits between the service and Postgres (a transaction pooler hands each
//! message to whichever server session is free, so a parse and its execution, sent apart, may
//! reach two). Only typed values are written, each by code that cannot produce anything but
//! its type's own characters: a uuid's hex digits and dashes, an integer's digits, `true` or
//! `false`, an RFC 3339 instant; never text a caller chose.

use chrono::{DateTime, SecondsFormat, Utc};
use uuid::Uuid;

/// A value written as a literal of its SQL type.
pub trait Literal {
    /// The SQL type the literal is cast to (so a null is typed too).
    const SQL_TYPE: &'static str;

    /// The value's characters, without quotes or cast.
    fn characters(&self) -> String;

    /// Whether the characters need quotes (all but numbers and booleans).
    const QUOTED: bool = true;

    fn literal(&self) -> String {
        match Self::QUOTED {
            true => format!("'{}'::{}", self.characters(), Self::SQL_TYPE),
            false => format!("{}::{}", self.characters(), Self::SQL_TYPE),
        }
    }
}

impl Literal for Uuid {
    const SQL_TYPE: &'static str = "uuid";
    fn characters(&self) -> String {
        self.hyphenated().to_string()
    }
}

impl Literal for DateTime<Utc> {
    const SQL_TYPE: &'static str = "timestamptz";
    fn characters(&self) -> String {
        self.to_rfc3339_opts(SecondsFormat::Micros, true)
    }
}

impl Literal for i64 {
    const SQL_TYPE: &'static str = "bigint";
    const QUOTED: bool = false;
    fn characters(&self) -> String {
        // Negative numbers in parentheses: `-1::bigint` would cast before negating.
        match *self < 0 {
            true => format!("({self})"),
            false => self.to_string(),
        }
    }
}

impl Literal for bool {
    const SQL_TYPE: &'static str = "boolean";
    const QUOTED: bool = false;
    fn characters(&self) -> String {
        self.to_string()
    }
}

/// A value of a statement: its literal, or a typed null.
pub fn value<T: Literal>(value: Option<&T>) -> String {
    match value {
        Some(value) => value.literal(),
        None => format!("null::{}", T::SQL_TYPE),
    }
}

/// `statement` with each parameter `$n` replaced by `values[n - 1]`; `--` comments and quoted
/// text are kept as they are. Panics on a parameter without a value, or on a block comment or
/// dollar quote in the statement (where `$n` may not be a parameter): statements are the
/// program's own, so either is a bug its tests catch.
pub fn written(statement: &str, values: &[String]) -> String {
    let mut text = String::with_capacity(statement.len() + 64 * values.len());
    let mut rest = statement;
    while let Some(at) = rest.find(['$', '-', '\'', '"', '/']) {
        text.push_str(&rest[..at]);
        rest = &rest[at..];
        let (kept, after) = if rest.starts_with("--") {
            rest.split_at(rest.find('\n').unwrap_or(rest.len()))
        } else if rest.starts_with('$') && rest[1..].starts_with(|c: char| c.is_ascii_digit()) {
            let digits = rest[1..]
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len() - 1);
            let number: usize = rest[1..=digits].parse().expect("digits");
            let value = values
                .get(number - 1)
                .unwrap_or_else(|| panic!("no value for ${number}"));
            text.push_str(value);
            rest = &rest[1 + digits..];
            continue;
        } else if let Some(quoted) = rest.strip_prefix(['"', '\'']) {
            // A quoted identifier (a column's name) or a constant of the statement's own: kept
            // to its closing quote (a doubled quote inside is two quoted runs, kept alike).
            let quote = rest.chars().next().expect("a quote");
            let end = quoted.find(quote).expect("a closed quote") + 2;
            rest.split_at(end)
        } else {
            assert!(
                !rest.starts_with("/*") && !rest.starts_with('$'),
                "a statement written with its values has no block comment or dollar quote: {}",
                &rest[..rest.len().min(40)]
            );
            rest.split_at(1)
        };
        text.push_str(kept);
        rest = after;
    }
    text.push_str(rest);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_parameter_is_replaced_by_its_value_and_comments_are_kept() {
        let statement =
            "select $1, $10, $2::uuid as \"n$4!\" -- isn't $3\nfrom t where a = $1 - 1 / 2";
        let values: Vec<String> = (1..=10).map(|n| format!("<{n}>")).collect();
        assert_eq!(
            written(statement, &values),
            "select <1>, <10>, <2>::uuid as \"n$4!\" -- isn't $3\nfrom t where a = <1> - 1 / 2"
        );
    }

    #[test]
    fn quoted_text_is_kept_as_it_is() {
        assert_eq!(
            written("select 'it''s $1', $1", &["<1>".into()]),
            "select 'it''s $1', <1>"
        );
    }

    #[test]
    #[should_panic(expected = "no block comment or dollar quote")]
    fn a_dollar_quote_is_a_bug() {
        written("select $$1$$", &["1".into()]);
    }

    #[test]
    #[should_panic(expected = "no value for $3")]
    fn a_parameter_without_a_value_is_a_bug() {
        written("select $3", &["1".into()]);
    }

    #[test]
    fn literals_are_typed_and_nulls_too() {
        let id = Uuid::from_u128(0x1234);
        assert_eq!(
            value(Some(&id)),
            "'00000000-0000-0000-0000-000000001234'::uuid"
        );
        assert_eq!(value::<Uuid>(None), "null::uuid");
        assert_eq!(value(Some(&-5i64)), "(-5)::bigint");
        assert_eq!(value(Some(&i64::MAX)), "9223372036854775807::bigint");
        assert_eq!(value(Some(&false)), "false::boolean");
        let at = DateTime::from_timestamp(1_700_000_000, 123_456_000).unwrap();
        assert_eq!(
            value(Some(&at)),
            "'2023-11-14T22:13:20.123456Z'::timestamptz"
        );
    }
}
