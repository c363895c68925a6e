//! Turns a request's `Authorization: Bearer …` into a verified partner token, with the rate
//! limits applied: per partner once the token verifies, per client address when it does not.

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use chrono::Utc;

use super::AppState;
use super::error::ApiError;
use crate::auth::Rejection;
use crate::store::PartnerToken;

/// A token whose signature and claims verified and whose partner is within its rate limit.
/// Its partner's standing in the database is checked by the statement that serves the request.
pub struct Authenticated(pub PartnerToken);

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(request).map(Self))
    }
}

pub fn authenticate(request: &HttpRequest) -> Result<PartnerToken, ApiError> {
    let state = request
        .app_data::<web::Data<AppState>>()
        .expect("AppState is registered on the app");
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
