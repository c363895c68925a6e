//! The OpenAPI 3.1 document (served at `/openapi.json`, rendered at `/docs`). Schemas come from
//! the response types themselves, parameter bounds from the configured limits, and the examples
//! (`examples`) from the vendor's document and `ApiError`, so the reference cannot drift from
//! what the server says.

mod examples;
mod parameters;
mod responses;

use chrono::{DateTime, FixedOffset};
use serde_json::json;
use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem, PathsBuilder,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{
    ComponentsBuilder, Deprecated, InfoBuilder, OpenApi, OpenApiBuilder, Required,
};
use utoipa::{PartialSchema, ToSchema};

use crate::domain::query::PageLimits;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::response::body::{LineItem, ListBody, TenantListItem};
use crate::store::demo::DEMO_TENANT_ID;
use examples::{lines_examples, tenants_examples};
use parameters::{filter_parameters, page_parameters, uuid_schema};
use responses::{error_response, legacy_responses, list_responses};

pub use examples::VENDOR_EXAMPLE;

/// ASCII, as the title: generators name modules and packages after them (`api/caller_lines`);
/// the page shows the Chinese with them, from their descriptions.
const TAG: &str = "caller lines";
const TITLE: &str = "agent-api partner API";

pub fn document(limits: PageLimits, sunset_at: DateTime<FixedOffset>) -> OpenApi {
    let lines = OperationBuilder::new()
        .tag(TAG)
        .operation_id(Some("listCallerLines"))
        .summary(Some("线路列表 · List caller lines"))
        .description(Some(
            "当前伙伴在该云节点上的所有线路(不包含拆分的线路和已删除的线路),按创建时间、id 升序分页。\n\n\
             Every caller line the calling partner owns on cloud node `{id}`, split and deleted \
             lines excluded, ordered by `created_at` then `id`, paginated.",
        ))
        .parameter(
            ParameterBuilder::new()
                .name("id")
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .description(Some("云节点 id · cloud node (tenant) id"))
                .schema(Some(uuid_schema()))
                .example(Some(json!(DEMO_TENANT_ID))),
        )
        .parameters(Some(page_parameters(limits).into_iter().chain(filter_parameters())))
        .responses(list_responses("CallerLineList", lines_examples(limits)));
    let tenants = OperationBuilder::new()
        .tag(TAG)
        .operation_id(Some("listTenants"))
        .summary(Some("云节点列表 · List the partner's cloud nodes"))
        .description(Some(
            "当前伙伴拥有线路的云节点,以及默认云节点。从旧接口迁移时用它查询云节点 id。\n\n\
             The cloud nodes on which the partner owns listed lines, plus the default node: \
             how partners leaving the legacy route learn their tenant ids.",
        ))
        .parameters(Some(page_parameters(limits)))
        .responses(list_responses("TenantList", tenants_examples(limits)));
    let legacy = OperationBuilder::new()
        .tag(TAG)
        .operation_id(Some("listCallerLinesLegacy"))
        .summary(Some(
            "线路列表(旧接口,已废弃) · List caller lines on the default node (deprecated)",
        ))
        .description(Some(format!(
            "旧接口:默认云节点的线路,参数与响应同新接口。{sunset} 下线后返回 410。\n\n\
             The old route: the default cloud node's lines, with the new route's parameters and \
             responses. Retired at {sunset} (HTTP 410 after, unless operators extend it). Every \
             response carries `Deprecation`, `Sunset` and a `Link` to its successor, \
             `/agent-api/tenant/{{id}}/callerline`.",
            sunset = sunset_at.to_rfc3339()
        )))
        .deprecated(Some(Deprecated::True))
        .parameters(Some(
            page_parameters(limits)
                .into_iter()
                .chain(filter_parameters()),
        ))
        .responses(legacy_responses(lines_examples(limits)));
    let paths = PathsBuilder::new()
        .path(
            "/agent-api/tenant/{id}/callerline",
            PathItem::new(HttpMethod::Get, lines),
        )
        .path("/agent-api/tenant", PathItem::new(HttpMethod::Get, tenants))
        .path(
            "/agent-api/callerline",
            PathItem::new(HttpMethod::Get, legacy),
        );

    let mut schemas = Vec::new();
    <ListBody<LineItem> as ToSchema>::schemas(&mut schemas);
    <LineItem as ToSchema>::schemas(&mut schemas);
    // Generic parameters are referenced by name but not collected: register them here.
    let components = ComponentsBuilder::new()
        .schemas_from_iter(schemas)
        .schema("LineItem", LineItem::schema())
        .schema("TenantListItem", TenantListItem::schema())
        .schema("CallerLineList", ListBody::<LineItem>::schema())
        .schema("TenantList", ListBody::<TenantListItem>::schema())
        .schema("Error", ErrorBody::schema())
        // Any path: an unknown one under /agent-api/, or a method other than GET.
        .response(
            "NotFound",
            error_response("接口不存在 · no such endpoint", ApiError::NotFound, None),
        )
        .response(
            "MethodNotAllowed",
            error_response(
                "请求方法不允许 · only GET and HEAD are allowed",
                ApiError::MethodNotAllowed,
                Some(("Allow", "GET, HEAD")),
            ),
        )
        .security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "伙伴的 JWT(`agent-api token issue`)· the partner's JWT, in \
                         `Authorization: Bearer …` only, never in the URL",
                    ))
                    .build(),
            ),
        )
        .build();

    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title(TITLE)
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "## 伙伴接口 · Partner API\n\n\
                     云呼叫中心平台的伙伴接口:查询伙伴在各云节点上的线路。业务错误以 HTTP 200 \
                     返回,由 `code` 区分(1001 参数错误,1004 云节点不存在)。\n\n\
                     The partner API of the cloud call-centre platform: the caller lines a \
                     partner owns on each cloud node. Business errors ride on HTTP 200 and are \
                     told apart by `code` (1001 bad parameter, 1004 no such cloud node); \
                     authentication, rate-limit and availability errors use their HTTP status. \
                     Unknown paths answer 404 and other methods 405, in the same envelope \
                     (components `NotFound`, `MethodNotAllowed`).",
                ))
                .build(),
        )
        .paths(paths)
        .components(Some(components))
        .security(Some([SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]))
        .tags(Some([TagBuilder::new()
            .name(TAG)
            .description(Some("线路 · 伙伴在各云节点上的线路和云节点"))
            .build()]))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_success_schema_lists_the_vendor_keys_in_order() {
        let document = serde_json::to_value(document(
            PageLimits {
                default_per_page: 15,
                max_per_page: 100,
            },
            "2023-02-01T00:00:00+08:00".parse().unwrap(),
        ))
        .unwrap();
        let keys = |schema: &str| -> Vec<String> {
            document["components"]["schemas"][schema]["properties"]
                .as_object()
                .unwrap_or_else(|| panic!("{schema} has properties"))
                .keys()
                .cloned()
                .collect()
        };
        assert_eq!(
            keys("CallerLineList"),
            ["code", "status", "message", "meta", "data"]
        );
        assert_eq!(
            keys("Meta"),
            [
                "has_pages",
                "total",
                "last_page",
                "current_page",
                "per_page"
            ]
        );
        assert_eq!(
            keys("LineItem"),
            [
                "id",
                "name",
                "user",
                "call_line",
                "deadline_at",
                "available_time",
                "begin_at",
                "available_at",
                "caller_number",
                "tenant",
                "created_at",
                "updated_at",
                "description_server",
                "qr_code",
                "call_number"
            ]
        );
        assert_eq!(document["openapi"], "3.1.0");
        assert_eq!(
            document["paths"]["/agent-api/callerline"]["get"]["deprecated"],
            true
        );
    }
}
