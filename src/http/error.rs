//! The one error type of the HTTP layer, rendered as the SPEC §2 envelope
//! `{"code", "status": "error", "message", "data": []}`. Causes go to the log, never the body.

use std::borrow::Cow;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::domain::query::InvalidParameter;
use crate::store;
use crate::tokens::Rejection;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("unauthorized: {0}")]
    Unauthorized(Rejection),
    #[error("invalid parameter: {0}")]
    InvalidParameter(#[from] InvalidParameter),
    #[error("tenant not found")]
    TenantNotFound,
    #[error("rate limited")]
    RateLimited { retry_after_seconds: u64 },
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// The database lacks migrations this build needs (said once in the log, not per request).
    #[error("the database's schema is behind this build")]
    SchemaBehind,
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
    #[error("no such endpoint")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("legacy route retired")]
    LegacyGone,
}

impl From<Rejection> for ApiError {
    fn from(rejection: Rejection) -> Self {
        Self::Unauthorized(rejection)
    }
}

impl From<store::Error> for ApiError {
    fn from(error: store::Error) -> Self {
        match error {
            store::Error::Database(error) => error.into(),
            store::Error::PartnerRejected => Rejection::PartnerRejected.into(),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    /// Connection trouble and Postgres saying "not now" are 503; the rest is a bug or bad data.
    fn from(error: sqlx::Error) -> Self {
        let transient = match &error {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_) => true,
            // A connection cut mid-handshake, as a proxy in front of a failing-over primary
            // does: sqlx reads the missing reply to its SSL request as garbage.
            sqlx::Error::Protocol(_) => true,
            // SQLSTATE classes 08 (connection), 53 (resources), 57 (operator intervention,
            // including statement_timeout's query_canceled and a restarting server).
            sqlx::Error::Database(db) => db.code().is_some_and(|code| {
                ["08", "53", "57"]
                    .iter()
                    .any(|class| code.starts_with(class))
            }),
            _ => false,
        };
        if transient {
            Self::Unavailable(error)
        } else {
            Self::Internal(error.into())
        }
    }
}

/// Why a request was refused (401), for its access line: never the token itself.
#[derive(Debug, Clone)]
pub struct Refusal(pub String);

/// Seconds a client should wait after a 503.
const UNAVAILABLE_RETRY_AFTER: u64 = 1;

/// Where the legacy route went (SPEC §3).
pub const LEGACY_GONE_MESSAGE: &str = "该接口已下线,请使用 GET /agent-api/tenant/{id}/callerline";

/// 错误响应 · The error envelope.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody<'a> {
    /// 错误码 · error code: 401, 1001, 1004, 404, 405, 410, 429, 500, 503
    #[schema(minimum = 401)]
    code: u32,
    /// `error`
    #[schema(value_type = String, example = "error", pattern = "^error$")]
    status: &'static str,
    /// 错误信息 · message
    #[schema(value_type = String)]
    message: Cow<'a, str>,
    /// 恒为空数组 · always an empty array
    #[schema(value_type = Vec<Object>, max_items = 0)]
    data: [(); 0],
}

impl ApiError {
    /// The envelope's `code` and `message`.
    fn code_and_message(&self) -> (u32, Cow<'_, str>) {
        match self {
            Self::Unauthorized(_) => (401, "鉴权失败".into()),
            Self::InvalidParameter(invalid) => (1001, invalid.0.as_str().into()),
            Self::TenantNotFound => (1004, "云节点不存在".into()),
            Self::RateLimited { .. } => (429, "请求过于频繁".into()),
            Self::Unavailable(_) | Self::SchemaBehind => (503, "服务暂不可用".into()),
            Self::Internal(_) => (500, "服务器内部错误".into()),
            Self::NotFound => (404, "接口不存在".into()),
            Self::MethodNotAllowed => (405, "请求方法不允许".into()),
            Self::LegacyGone => (410, LEGACY_GONE_MESSAGE.into()),
        }
    }

    /// The envelope this error answers with.
    pub fn body(&self) -> ErrorBody<'_> {
        let (code, message) = self.code_and_message();
        ErrorBody {
            code,
            status: "error",
            message,
            data: [],
        }
    }

    /// 5xx causes are logged here; why a request was refused goes on its one access line
    /// (`Refusal`), throttled there.
    fn log(&self) {
        if let Self::Unavailable(_) | Self::Internal(_) = self {
            tracing::error!(error = %chain(self), "request failed")
        }
    }
}

/// `error: cause: cause…`, for the log line of a 5xx.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            // Business errors ride on HTTP 200, as in the vendor's API.
            Self::InvalidParameter(_) | Self::TenantNotFound => StatusCode::OK,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) | Self::SchemaBehind => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::LegacyGone => StatusCode::GONE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        self.log();
        let mut response = HttpResponse::build(self.status_code());
        if let Self::Unauthorized(rejection) = self {
            response
                .extensions_mut()
                .insert(Refusal(rejection.to_string()));
        }
        match self {
            Self::Unauthorized(_) => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            Self::RateLimited {
                retry_after_seconds,
            } => {
                response.insert_header((header::RETRY_AFTER, retry_after_seconds.to_string()));
            }
            Self::Unavailable(_) | Self::SchemaBehind => {
                response.insert_header((header::RETRY_AFTER, UNAVAILABLE_RETRY_AFTER.to_string()));
            }
            Self::MethodNotAllowed => {
                response.insert_header((header::ALLOW, "GET, HEAD"));
            }
            _ => {}
        }
        response.json(self.body())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::to_bytes;

    async fn body(error: ApiError) -> String {
        let bytes = to_bytes(error.error_response().into_body()).await.unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[actix_web::test]
    async fn tenant_not_found_is_the_vendor_fixture() {
        let expected: serde_json::Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/error_tenant_not_found.json"
        ))
        .unwrap();
        let rendered = body(ApiError::TenantNotFound).await;
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&rendered).unwrap(),
            expected
        );
        assert_eq!(
            rendered,
            r#"{"code":1004,"status":"error","message":"云节点不存在","data":[]}"#
        );
    }

    #[actix_web::test]
    async fn internal_errors_keep_their_cause_out_of_the_body() {
        let rendered = body(ApiError::Internal(anyhow::anyhow!(
            "secret table xyz exploded"
        )))
        .await;
        assert_eq!(
            rendered,
            r#"{"code":500,"status":"error","message":"服务器内部错误","data":[]}"#
        );
    }

    #[test]
    fn connection_failures_are_unavailable_not_internal() {
        assert!(matches!(
            ApiError::from(sqlx::Error::PoolTimedOut),
            ApiError::Unavailable(_)
        ));
        assert!(matches!(
            ApiError::from(sqlx::Error::Protocol(
                "unexpected response from SSLRequest".into()
            )),
            ApiError::Unavailable(_)
        ));
        assert!(matches!(
            ApiError::from(sqlx::Error::RowNotFound),
            ApiError::Internal(_)
        ));
    }
}
