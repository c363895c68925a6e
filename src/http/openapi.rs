//! The OpenAPI 3.1 document (served at `/openapi.json`, rendered at `/docs`). Schemas come from
//! the wire types themselves, parameter bounds from the configured limits, and every error
//! example is rendered by `ApiError`, so the reference cannot drift from what the server says.

use chrono::{DateTime, FixedOffset};
use serde_json::{Value, json};
use utoipa::openapi::example::ExampleBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem, PathsBuilder,
};
use utoipa::openapi::response::{ResponseBuilder, ResponsesBuilder};
use utoipa::openapi::schema::{
    ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, Deprecated, InfoBuilder, KnownFormat, OpenApi,
    OpenApiBuilder, Ref, RefOr, Required, Response,
};
use utoipa::{PartialSchema, ToSchema};

use super::error::ApiError;
use super::wire::{LineItem, ListBody, TenantListItem};
use crate::auth::Rejection;
use crate::domain::query::{LineFilter, PageLimits, PageRequest, QueryParams};

/// The vendor's example, which the demo data reproduces (SPEC §2).
const LINES_EXAMPLE: &str = include_str!("../../tests/fixtures/callerline_page1_per2.json");
const DEMO_TENANT: &str = "f2d216a3-9ea5-4f1d-a170-ce9ebed49eaf";
const TAG: &str = "线路 · Caller lines";

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
                .example(Some(json!(DEMO_TENANT))),
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
        .schema("Error", super::error::ErrorBody::schema())
        // Any path: an unknown one under /agent-api/, or a method other than GET.
        .response(
            "NotFound",
            error_response("接口不存在 · no such endpoint", ApiError::NotFound, None),
        )
        .response(
            "MethodNotAllowed",
            error_response(
                "请求方法不允许 · only GET is allowed",
                ApiError::MethodNotAllowed,
                Some(("Allow", "GET")),
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
                .title("agent-api · 伙伴接口 · Partner API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "云呼叫中心平台的伙伴接口:查询伙伴在各云节点上的线路。业务错误以 HTTP 200 \
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
        .tags(Some([TagBuilder::new().name(TAG).build()]))
        .build()
}

fn uuid_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(SchemaType::new(Type::String))
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
}

fn integer(minimum: i64, maximum: i64, default: i64) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(SchemaType::new(Type::Integer))
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(minimum))
        .maximum(Some(maximum))
        .default(Some(json!(default)))
}

fn query(name: &str, description: &str, schema: ObjectBuilder) -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(schema))
        .build()
}

fn page_parameters(limits: PageLimits) -> Vec<utoipa::openapi::path::Parameter> {
    vec![
        query(
            "page",
            "页码,≥ 1;超过最后一页返回空 data · page number, ≥ 1; past the last page, `data` is empty",
            integer(1, i64::MAX, 1),
        ),
        query(
            "per_page",
            &format!(
                "每页条数,1 到 {max} · page size, 1 to {max}",
                max = limits.max_per_page
            ),
            integer(1, limits.max_per_page, limits.default_per_page),
        ),
    ]
}

fn filter_parameters() -> Vec<utoipa::openapi::path::Parameter> {
    vec![
        query(
            "user_id",
            "只返回分配给该用户的线路 · only lines allocated to this user",
            uuid_schema(),
        ),
        query(
            "unused",
            "true/1:只返回未分配的线路;false/0:只返回已分配的;缺省返回全部 · \
             true/1: only unallocated lines; false/0: only allocated ones; absent: all",
            ObjectBuilder::new()
                .schema_type(SchemaType::new(Type::String))
                .enum_values(Some(["true", "false", "1", "0"])),
        ),
    ]
}

/// Named examples of the HTTP-200 bodies: the success case and the business errors. Names are
/// numbered because the document keeps examples sorted and Swagger UI shows the first.
type Examples = Vec<(&'static str, &'static str, Value)>;

fn lines_examples(limits: PageLimits) -> Examples {
    let bad_page = PageRequest::parse(&QueryParams::parse("page=0"), limits).unwrap_err();
    let bad_user = LineFilter::parse(&QueryParams::parse("user_id=42")).unwrap_err();
    vec![
        (
            "1_success",
            "查看线路成功 · GET …/callerline?page=1&per_page=2 on the demo data",
            serde_json::from_str(LINES_EXAMPLE).expect("the fixture is JSON"),
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

fn tenants_examples(limits: PageLimits) -> Examples {
    let bad_page = PageRequest::parse(&QueryParams::parse("page=0"), limits).unwrap_err();
    vec![
        (
            "1_success",
            "查看云节点成功 · the demo partner",
            json!({
                "code": 200, "status": "success", "message": "查看云节点成功",
                "meta": {"has_pages": false, "total": 1, "last_page": 1, "current_page": 1,
                         "per_page": limits.default_per_page.to_string()},
                "data": [{"id": DEMO_TENANT, "name": "云节点一", "is_default": true}]
            }),
        ),
        (
            "2_bad_page",
            "参数错误 · page=0",
            envelope(&ApiError::from(bad_page)),
        ),
    ]
}

fn envelope(error: &ApiError) -> Value {
    serde_json::to_value(error.body()).expect("envelopes serialize")
}

fn json_content(schema: impl Into<RefOr<Schema>>, examples: Examples) -> utoipa::openapi::Content {
    ContentBuilder::new()
        .schema(Some(schema))
        .examples_from_iter(examples.into_iter().map(|(name, summary, value)| {
            (
                name,
                ExampleBuilder::new()
                    .summary(summary)
                    .value(Some(value))
                    .build(),
            )
        }))
        .build()
}

/// A non-200 error with its envelope example and, where the SPEC sets one, its header.
fn error_response(description: &str, error: ApiError, header: Option<(&str, &str)>) -> Response {
    let mut response = ResponseBuilder::new().description(description).content(
        "application/json",
        json_content(
            Ref::from_schema_name("Error"),
            vec![("error", "", envelope(&error))],
        ),
    );
    if let Some((name, what)) = header {
        response = response.header(
            name,
            HeaderBuilder::new()
                .schema(Some(
                    ObjectBuilder::new().schema_type(SchemaType::new(Type::String)),
                ))
                .description(Some(what))
                .build(),
        );
    }
    response.build()
}

fn list_responses(success_schema: &str, examples: Examples) -> ResponsesBuilder {
    // HTTP 200 carries the success envelope or a business error (1001, 1004), as the vendor's does.
    let either = OneOfBuilder::new()
        .item(Ref::from_schema_name(success_schema))
        .item(Ref::from_schema_name("Error"));
    let ok = ResponseBuilder::new()
        .description("成功,或业务错误 1001 / 1004 · success, or business error 1001 / 1004")
        .content("application/json", json_content(either, examples))
        .build();
    ResponsesBuilder::new()
        .response("200", ok)
        .response(
            "401",
            error_response(
                "鉴权失败 · missing, invalid, expired or revoked token",
                ApiError::Unauthorized(Rejection::Missing),
                Some(("WWW-Authenticate", "Bearer")),
            ),
        )
        .response(
            "429",
            error_response(
                "请求过于频繁 · over the partner's rate limit",
                ApiError::RateLimited {
                    retry_after_seconds: 1,
                },
                Some(("Retry-After", "秒 · seconds to wait")),
            ),
        )
        .response(
            "500",
            error_response(
                "服务器内部错误 · internal error",
                ApiError::Internal(anyhow::anyhow!("example")),
                None,
            ),
        )
        .response(
            "503",
            error_response(
                "服务暂不可用 · database unavailable, retry later",
                ApiError::Unavailable(sqlx::Error::PoolTimedOut),
                Some(("Retry-After", "秒 · seconds to wait")),
            ),
        )
}

fn legacy_responses(examples: Examples) -> ResponsesBuilder {
    list_responses("CallerLineList", examples).response(
        "410",
        error_response(
            "已下线 · retired: use GET /agent-api/tenant/{id}/callerline",
            ApiError::LegacyGone,
            Some(("Sunset", "RFC 8594 HTTP-date")),
        ),
    )
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
