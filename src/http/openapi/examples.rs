//! The documented example bodies: the vendor's own example of a page (which the demo data
//! reproduces, SPEC §2, and which tests compare with what the server answers), and every error
//! as `ApiError` renders it.

use serde_json::{Value, json};

use crate::domain::query::{LineFilter, PageLimits, PageRequest, QueryParams};
use crate::http::error::ApiError;
use crate::store::demo::DEMO_TENANT_ID;

/// The vendor document's example: page 1 of the demo partner's lines, two per page.
pub const VENDOR_EXAMPLE: &str = include_str!("callerline_page1_per2.json");

/// Named examples of the HTTP-200 bodies: the success case and the business errors. Names are
/// numbered because the document keeps examples sorted and Swagger UI shows the first.
pub(super) type Examples = Vec<(&'static str, &'static str, Value)>;

pub(super) fn lines_examples(limits: PageLimits) -> Examples {
    let bad_page = PageRequest::parse(&QueryParams::parse("page=0"), limits).unwrap_err();
    let bad_user = LineFilter::parse(&QueryParams::parse("user_id=42")).unwrap_err();
    vec![
        (
            "1_success",
            "查看线路成功 · GET …/callerline?page=1&per_page=2 on the demo data",
            serde_json::from_str(VENDOR_EXAMPLE).expect("the vendor example is JSON"),
        ),
        (
            "2_bad_page",
            "参数错误 · page=0",
            envelope(&ApiError::from(bad_page)),
        ),
        (
            "3_bad_user_id",
            "参数错误 · user_id=42",
            envelope(&ApiError::from(bad_user)),
        ),
        (
            "4_no_tenant",
            "云节点不存在 · no such cloud node",
            envelope(&ApiError::TenantNotFound),
        ),
    ]
}

pub(super) fn tenants_examples(limits: PageLimits) -> Examples {
    let bad_page = PageRequest::parse(&QueryParams::parse("page=0"), limits).unwrap_err();
    vec![
        (
            "1_success",
            "查看云节点成功 · the demo partner",
            json!({
                "code": 200, "status": "success", "message": "查看云节点成功",
                "meta": {"has_pages": false, "total": 1, "last_page": 1, "current_page": 1,
                         "per_page": limits.default_per_page.to_string()},
                "data": [{"id": DEMO_TENANT_ID, "name": "云节点一", "is_default": true}]
            }),
        ),
        (
            "2_bad_page",
            "参数错误 · page=0",
            envelope(&ApiError::from(bad_page)),
        ),
    ]
}

pub(super) fn envelope(error: &ApiError) -> Value {
    serde_json::to_value(error.body()).expect("envelopes serialize")
}
