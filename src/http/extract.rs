//! What handlers take from a request beyond its path and query: the authenticated partner (with
//! the rate limits applied) and the default tenant; and the partner check that outranks the
//! errors a handler finds itself.

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use chrono::Utc;
use futures_util::future::LocalBoxFuture;
use uuid::Uuid;

use super::error::ApiError;
use super::state::AppState;
use crate::domain::partners::PartnerToken;
use crate::store;
use crate::tokens::Rejection;

/// A token whose signature and claims verified and whose partner is within its rate limit.
/// Its partner's standing in the database is checked by the statement that serves the request.
/// The token is also left in the request's extensions, for middleware that reports per partner.
pub struct Authenticated(pub PartnerToken);

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(request).map(|token| {
            request.extensions_mut().insert(token);
            Self(token)
        }))
    }
}

fn authenticate(request: &HttpRequest) -> Result<PartnerToken, ApiError> {
    let state = app_state(request);
    match bearer_token(request).and_then(|token| state.keys.verify(token, Utc::now())) {
        Ok(token) => {
            tracing::Span::current()
                .record("partner_id", tracing::field::display(token.partner_id));
            if let Some(limits) = &state.rate_limits {
                limits.check_partner(token.partner_id).map_err(|retry| {
                    metrics::counter!("agent_api_rate_limited_total", "partner_id" => token.partner_id.to_string())
                        .increment(1);
                    ApiError::RateLimited { retry_after_seconds: retry.0 }
                })?;
            }
            Ok(token)
        }
        Err(rejection) => {
            // A client that keeps failing authentication is slowed down by its address.
            if let (Some(limits), Some(peer)) = (&state.rate_limits, request.peer_addr()) {
                limits
                    .check_address(peer.ip())
                    .map_err(|retry| ApiError::RateLimited {
                        retry_after_seconds: retry.0,
                    })?;
            }
            Err(rejection.into())
        }
    }
}

/// The token of `Authorization: Bearer <token>`; the scheme is case-insensitive (RFC 9110).
fn bearer_token(request: &HttpRequest) -> Result<&str, Rejection> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or(Rejection::Missing)?
        .to_str()
        .map_err(|_| Rejection::Malformed)?;
    let (scheme, token) = value.split_once(' ').ok_or(Rejection::Missing)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(Rejection::Missing);
    }
    Ok(token)
}

/// The answer to an authenticated request that fails on something other than its partner,
/// unless the partner is rejected, which outranks it (SPEC §2: 401 before 1001; SPEC §3: before
/// 410). Only these rare paths pay for a separate check: the list statements check in passing.
pub async fn unless_partner_rejected(
    state: &AppState,
    token: PartnerToken,
    error: ApiError,
) -> ApiError {
    match store::partners::partner_is_active(&state.pool, token).await {
        Ok(true) => error,
        Ok(false) => Rejection::PartnerRejected.into(),
        Err(error) => error.into(),
    }
}

/// The default tenant's id (the legacy route's, SPEC §3), `None` when there is none. Read once
/// per request: taken from the extensions when a wrapper already read it.
pub struct DefaultTenant(pub Option<Uuid>);

/// The lookup a wrapper made, handed on to the handler.
pub struct DefaultTenantLookup(pub Result<Option<Uuid>, sqlx::Error>);

impl FromRequest for DefaultTenant {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let looked_up = request.extensions_mut().remove::<DefaultTenantLookup>();
        let state = app_state(request).clone();
        Box::pin(async move {
            let lookup = match looked_up {
                Some(DefaultTenantLookup(lookup)) => lookup,
                None => store::tenants::default_tenant_id(&state.pool).await,
            };
            Ok(Self(lookup?))
        })
    }
}

fn app_state(request: &HttpRequest) -> &web::Data<AppState> {
    request
        .app_data::<web::Data<AppState>>()
        .expect("AppState is registered on the app")
}
