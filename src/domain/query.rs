//! Query-string rules of SPEC §2: an empty value counts as absent, the last repeated value wins,
//! unknown parameters are ignored, and a value that breaks its rule is a 1001 naming it.

use std::borrow::Cow;

use uuid::Uuid;

/// A parameter broke its rule; the message is the partner-facing 1001 text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidParameter(pub String);

impl InvalidParameter {
    fn new(name: &str, rule: &str) -> Self {
        Self(format!("参数错误:{name} {rule}"))
    }
}

/// The decoded query string, last value per name.
#[derive(Debug, Default)]
pub struct QueryParams<'q> {
    pairs: Vec<(Cow<'q, str>, Cow<'q, str>)>,
}

impl<'q> QueryParams<'q> {
    /// Never fails: bad percent-encoding decodes lossily and then fails its parameter's rule.
    pub fn parse(query_string: &'q str) -> Self {
        Self {
            pairs: form_urlencoded::parse(query_string.as_bytes()).collect(),
        }
    }

    /// The last value given for `name`, or `None` when absent or empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_ref())
            .filter(|value| !value.is_empty())
    }
}

/// Page-size bounds from configuration.
#[derive(Debug, Clone, Copy)]
pub struct PageLimits {
    pub default_per_page: i64,
    pub max_per_page: i64,
}

/// `page` and `per_page`, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PageRequest {
    pub page: i64,
    pub per_page: i64,
}

impl PageRequest {
    pub fn parse(params: &QueryParams<'_>, limits: PageLimits) -> Result<Self, InvalidParameter> {
        let page = match params.get("page") {
            None => 1,
            Some(raw) => parse_integer(raw, 1, i64::MAX)
                .ok_or_else(|| InvalidParameter::new("page", "必须是不小于 1 的整数"))?,
        };
        let per_page = match params.get("per_page") {
            None => limits.default_per_page,
            Some(raw) => parse_integer(raw, 1, limits.max_per_page).ok_or_else(|| {
                InvalidParameter::new(
                    "per_page",
                    &format!("必须是 1 到 {} 之间的整数", limits.max_per_page),
                )
            })?,
        };
        Ok(Self { page, per_page })
    }

    /// Rows to skip; saturates, since any page that far out is past the last one.
    pub fn offset(&self) -> i64 {
        (self.page - 1).saturating_mul(self.per_page)
    }
}

/// The caller-line filters, `user_id` and `unused`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct LineFilter {
    pub user_id: Option<Uuid>,
    /// `Some(true)`: only unallocated lines; `Some(false)`: only allocated ones.
    pub unused: Option<bool>,
}

impl LineFilter {
    pub fn parse(params: &QueryParams<'_>) -> Result<Self, InvalidParameter> {
        let user_id = params
            .get("user_id")
            .map(|raw| {
                Uuid::try_parse(raw).map_err(|_| InvalidParameter::new("user_id", "必须是 UUID"))
            })
            .transpose()?;
        let unused = params
            .get("unused")
            .map(|raw| match raw {
                "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                _ => Err(InvalidParameter::new(
                    "unused",
                    "必须是 true、false、1 或 0",
                )),
            })
            .transpose()?;
        Ok(Self { user_id, unused })
    }
}

/// Plain decimal digits within `min..=max`; no sign, spaces or exponent.
fn parse_integer(raw: &str, min: i64, max: i64) -> Option<i64> {
    if !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    raw.parse::<i64>()
        .ok()
        .filter(|value| (min..=max).contains(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIMITS: PageLimits = PageLimits {
        default_per_page: 15,
        max_per_page: 100,
    };

    fn page(qs: &str) -> Result<PageRequest, InvalidParameter> {
        PageRequest::parse(&QueryParams::parse(qs), LIMITS)
    }

    fn filter(qs: &str) -> Result<LineFilter, InvalidParameter> {
        LineFilter::parse(&QueryParams::parse(qs))
    }

    #[test]
    fn absent_and_empty_values_take_the_defaults() {
        let expected = PageRequest {
            page: 1,
            per_page: 15,
        };
        assert_eq!(page("").unwrap(), expected);
        assert_eq!(page("page=&per_page=").unwrap(), expected);
        assert_eq!(filter("user_id=&unused=").unwrap(), LineFilter::default());
    }

    #[test]
    fn the_last_repeated_value_wins_even_when_empty() {
        assert_eq!(page("page=2&page=3").unwrap().page, 3);
        assert_eq!(page("page=x&page=3").unwrap().page, 3);
        assert_eq!(page("page=2&page=").unwrap().page, 1);
    }

    #[test]
    fn unknown_parameters_are_ignored() {
        assert_eq!(page("foo=bar&page=2&PAGE=x").unwrap().page, 2);
    }

    #[test]
    fn page_accepts_the_whole_i64_range() {
        let huge = page("page=9223372036854775807").unwrap();
        assert_eq!(huge.page, i64::MAX);
        assert_eq!(huge.offset(), i64::MAX);
        assert_eq!(page("page=007").unwrap().page, 7);
    }

    #[test]
    fn rule_breaking_values_name_their_parameter() {
        let cases = [
            ("page=0", "page"),
            ("page=-1", "page"),
            ("page=+1", "page"),
            ("page=1.5", "page"),
            ("page=%201", "page"),
            ("page=9223372036854775808", "page"),
            ("page=abc", "page"),
            ("per_page=0", "per_page"),
            ("per_page=101", "per_page"),
            ("per_page=1e2", "per_page"),
        ];
        for (qs, name) in cases {
            let message = page(qs).unwrap_err().0;
            assert!(
                message.starts_with(&format!("参数错误:{name} ")),
                "{qs} gave {message}"
            );
        }
        assert!(page("per_page=101").unwrap_err().0.contains("1 到 100"));
        for qs in ["user_id=42", "user_id=%FF", "unused=yes", "unused=TRUE"] {
            let message = filter(qs).unwrap_err().0;
            assert!(message.starts_with("参数错误:"), "{qs} gave {message}");
        }
    }

    #[test]
    fn filters_parse_every_documented_spelling() {
        let id = Uuid::new_v4();
        assert_eq!(filter(&format!("user_id={id}")).unwrap().user_id, Some(id));
        assert_eq!(filter("unused=true").unwrap().unused, Some(true));
        assert_eq!(filter("unused=1").unwrap().unused, Some(true));
        assert_eq!(filter("unused=false").unwrap().unused, Some(false));
        assert_eq!(filter("unused=0").unwrap().unused, Some(false));
    }

    #[test]
    fn offset_is_rows_before_the_page() {
        let request = PageRequest {
            page: 3,
            per_page: 2,
        };
        assert_eq!(request.offset(), 4);
    }

    proptest! {
        #[test]
        fn any_query_string_parses_or_names_a_parameter(qs in ".{0,200}") {
            let params = QueryParams::parse(&qs);
            for outcome in [
                PageRequest::parse(&params, LIMITS).map(|_| ()),
                LineFilter::parse(&params).map(|_| ()),
            ] {
                if let Err(InvalidParameter(message)) = outcome {
                    prop_assert!(message.starts_with("参数错误:"));
                }
            }
        }

        #[test]
        fn valid_pages_round_trip(page_number in 1..=i64::MAX, per_page in 1..=100_i64) {
            let parsed = page(&format!("page={page_number}&per_page={per_page}")).unwrap();
            prop_assert_eq!(parsed, PageRequest { page: page_number, per_page });
            prop_assert!(parsed.offset() >= 0);
        }
    }
}
