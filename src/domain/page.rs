//! The `meta` of a list response (SPEC §2), derived from the request and the total.

use super::query::PageRequest;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageMeta {
    pub has_pages: bool,
    pub total: i64,
    pub last_page: i64,
    pub current_page: i64,
    pub per_page: i64,
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
}
