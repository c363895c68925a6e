//! The documented responses: HTTP 200 carrying either the success envelope or a business error
//! (as the vendor's API does), and each error status with its envelope and headers.

use utoipa::openapi::example::ExampleBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::response::{ResponseBuilder, ResponsesBuilder};
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type};
use utoipa::openapi::{Content, ContentBuilder, Ref, RefOr, Response};

use super::examples::{Examples, envelope};
use crate::http::error::ApiError;
use crate::tokens::Rejection;

fn json_content(schema: impl Into<RefOr<Schema>>, examples: Examples) -> Content {
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
pub(super) fn error_response(
    description: &str,
    error: ApiError,
    header: Option<(&str, &str)>,
) -> Response {
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

pub(super) fn list_responses(success_schema: &str, examples: Examples) -> ResponsesBuilder {
    // HTTP 200 carries the success envelope or a business error (1001, 1004), as the vendor's does.
    let either = OneOfBuilder::new()
        .item(Ref::from_schema_name(success_schema))
        .item(Ref::from_schema_name("Error"));
    let ok = ResponseBuilder::new()
        .description("成功,或业务错误 1001 / 1004 · success, or business error 1001 / 1004")
        .content("application/json", json_content(either, examples))
        .build();
    // Sent back as `If-None-Match` while the page is unchanged, its `ETag` answers 304.
    let not_modified = ResponseBuilder::new()
        .description("未修改 · not modified: the page is still the one its ETag names (no body)")
        .header(
            "ETag",
            HeaderBuilder::new()
                .schema(Some(
                    ObjectBuilder::new().schema_type(SchemaType::new(Type::String)),
                ))
                .description(Some("the page's weak tag, as on the 200"))
                .build(),
        )
        .build();
    ResponsesBuilder::new()
        .response("200", ok)
        .response("304", not_modified)
        .response(
            "401",
            error_response(
                "鉴权失败 · missing, invalid, expired or revoked token",
                ApiError::Unauthorized(Rejection::Missing),
                Some(("WWW-Authenticate", "Bearer")),
            ),
        )
        .response("405", Ref::from_response_name("MethodNotAllowed"))
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

pub(super) fn legacy_responses(examples: Examples) -> ResponsesBuilder {
    list_responses("CallerLineList", examples).response(
        "410",
        error_response(
            "已下线 · retired: use GET /agent-api/tenant/{id}/callerline",
            ApiError::LegacyGone,
            Some(("Sunset", "RFC 8594 HTTP-date")),
        ),
    )
}
