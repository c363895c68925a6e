//! One page of a list: its rows, and the `meta` partners read (SPEC §2), derived from the
//! request and the total.

use serde::{Serialize, Serializer};
use utoipa::ToSchema;

use super::query::PageRequest;

/// One page of a list and the number of matching rows.
#[derive(Debug)]
pub struct Listing<T> {
    pub total: i64,
    pub items: Vec<T>,
}

/// 分页信息 · Paging. Serialized field for field in the vendor's key order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[schema(as = Meta)]
pub struct PageMeta {
    /// `current_page != 1 || current_page < last_page`(沿用原接口定义 · the vendor's definition)
    pub has_pages: bool,
    /// 符合条件的总数 · matching rows
    pub total: i64,
    /// max(1, ceil(total / per_page))
    pub last_page: i64,
    /// 请求的页码 · the requested page
    pub current_page: i64,
    /// 每页条数,字符串 · page size, as a string (`"15"`)
    #[serde(serialize_with = "as_string")]
    #[schema(value_type = String, example = "15", pattern = "^[1-9][0-9]*$")]
    pub per_page: i64,
}

/// The vendor sends `per_page` as a JSON string.
fn as_string<S: Serializer>(value: &i64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

impl PageMeta {
    pub fn new(request: PageRequest, total: i64) -> Self {
        // ceil(total / per_page) without overflow, and never below 1 (an empty list has one page).
        let last_page =
            (total / request.per_page + i64::from(total % request.per_page != 0)).max(1);
        Self {
            // The vendor's definition, kept for compatibility: not "more than one page".
            has_pages: request.page != 1 || request.page < last_page,
            total,
            last_page,
            current_page: request.page,
            per_page: request.per_page,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(page: i64, per_page: i64, total: i64) -> PageMeta {
        PageMeta::new(PageRequest { page, per_page }, total)
    }

    #[test]
    fn last_page_is_the_ceiling_and_at_least_one() {
        assert_eq!(meta(1, 15, 0).last_page, 1);
        assert_eq!(meta(1, 15, 15).last_page, 1);
        assert_eq!(meta(1, 15, 16).last_page, 2);
        assert_eq!(meta(1, 2, 5).last_page, 3);
        assert_eq!(meta(1, 1, i64::MAX).last_page, i64::MAX);
        assert_eq!(meta(1, 100, i64::MAX).last_page, i64::MAX / 100 + 1);
    }

    #[test]
    fn has_pages_follows_the_vendor_truth_table() {
        // (page, per_page, total) → has_pages
        let table = [
            ((1, 15, 0), false),  // empty: one page, on it
            ((1, 15, 15), false), // exactly one full page
            ((1, 2, 5), true),    // first of several
            ((3, 2, 5), true),    // last of several: not page 1
            ((2, 15, 3), true),   // past the only page
            ((9, 15, 0), true),   // past the end of nothing
        ];
        for ((page, per_page, total), expected) in table {
            assert_eq!(
                meta(page, per_page, total).has_pages,
                expected,
                "page {page}, per_page {per_page}, total {total}"
            );
        }
    }

    #[test]
    fn per_page_is_written_as_a_string_in_the_vendor_order() {
        assert_eq!(
            serde_json::to_string(&meta(2, 15, 16)).unwrap(),
            r#"{"has_pages":true,"total":16,"last_page":2,"current_page":2,"per_page":"15"}"#
        );
    }
}
