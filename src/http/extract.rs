//! What handlers take from a request beyond its path and query: the authenticated partner (its
//! standing checked and its rate limit applied) and the default tenant.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use chrono::Utc;
use futures_util::future::LocalBoxFuture;
use tracing::Instrument;
use uuid::Uuid;

use super::client_address::client_address;
use super::error::ApiError;
use super::state::AppState;
use crate::cache::{Keep, Outcome};
use crate::domain::partners::{PartnerToken, Standing};
use crate::store;
use crate::tokens::Rejection;

/// A token whose signature and claims verified, whose partner's standing accepts it, and whose
/// partner is within its rate limit, in that order (SPEC §2: 401 before 429). The token is also
/// left in the request's extensions, for middleware that reports per partner.
pub struct Authenticated(pub PartnerToken);

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let request = request.clone();
        Box::pin(async move {
            // The request's log span names the partner; traces get a span of their own.
            let logged = tracing::Span::current();
            let span =
                tracing::debug_span!("authenticate", "agent_api.standing" = tracing::field::Empty,);
            let token = authenticate(&request, &logged).instrument(span).await?;
            request.extensions_mut().insert(token);
            Ok(Self(token))
        })
    }
}

async fn authenticate(
    request: &HttpRequest,
    logged: &tracing::Span,
) -> Result<PartnerToken, ApiError> {
    let state = app_state(request);
    let token = match bearer_token(request).and_then(|token| state.keys.verify(token, Utc::now())) {
        Ok(token) => token,
        Err(rejection) => return Err(refuse(state, request, rejection).await),
    };
    logged.record("partner_id", tracing::field::display(token.partner_id));
    if !standing(state, token).await?.accepts(&token) {
        return Err(refuse(state, request, Rejection::PartnerRejected).await);
    }
    if let Some(limits) = &state.rate_limits {
        limits.check_partner(token.partner_id).await.map_err(|retry| {
            metrics::counter!("agent_api_rate_limited_total", "partner_id" => token.partner_id.to_string())
                .increment(1);
            ApiError::RateLimited { retry_after_seconds: retry.0 }
        })?;
    }
    Ok(token)
}

/// A refused token is charged to its client's address, never to the partner it names: a
/// revoked token cannot spend its partner's budget, and a client that keeps failing
/// authentication is slowed down.
async fn refuse(state: &AppState, request: &HttpRequest, rejection: Rejection) -> ApiError {
    let client = client_address(request, &state.trusted_proxies);
    if let (Some(limits), Some(client)) = (&state.rate_limits, client)
        && let Err(retry) = limits.check_address(client).await
    {
        return ApiError::RateLimited {
            retry_after_seconds: retry.0,
        };
    }
    rejection.into()
}

/// The partner's standing: from memory while it is current, else from the database (the
/// primary: a replica may not have replayed a revocation yet), kept for the next request.
async fn standing(state: &AppState, token: PartnerToken) -> Result<Standing, ApiError> {
    let read = async |_| {
        let standing = store::partners::standing(&state.database, token.partner_id).await?;
        Ok::<_, ApiError>((standing, Keep::Yes))
    };
    let (standing, outcome) = state.standings.get_or_read(&token.partner_id, read).await?;
    // Where the standing came from, on the authentication's span.
    let from = match outcome {
        Outcome::Hit => "memory",
        Outcome::Miss | Outcome::Bypass => "database",
    };
    tracing::Span::current().record("agent_api.standing", from);
    Ok(standing)
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

/// The default tenant's id (the legacy route's, SPEC §3), `None` when there is none: from
/// memory while it is current, else from the database.
pub struct DefaultTenant(pub Option<Uuid>);

impl FromRequest for DefaultTenant {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = app_state(request).clone();
        Box::pin(async move {
            let read = async |_| {
                let id = store::tenants::default_tenant_id(&state.database).await?;
                Ok::<_, ApiError>((id, Keep::Yes))
            };
            let (id, _) = state.default_tenant.get_or_read(&(), read).await?;
            Ok(Self(id))
        })
    }
}

fn app_state(request: &HttpRequest) -> &web::Data<AppState> {
    request
        .app_data::<web::Data<AppState>>()
        .expect("AppState is registered on the app")
}
