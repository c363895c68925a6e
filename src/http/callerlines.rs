//! GET /agent-api/tenant/{id}/callerline (SPEC §2).

use actix_web::{HttpRequest, HttpResponse, web};
use uuid::Uuid;

use super::AppState;
use super::authn::Authenticated;
use super::error::ApiError;
use super::listing_cache::{Lookup, PageKey};
use super::representation::{Coding, EncodedPage};
use super::wire::{LineItem, list_body};
use crate::auth::Rejection;
use crate::domain::query::{InvalidParameter, LineFilter, PageRequest, QueryParams};
use crate::store::{self, PartnerToken, caller_lines::LineListing};

#[tracing::instrument(name = "list_caller_lines", skip_all)]
pub async fn list_on_tenant(
    state: web::Data<AppState>,
    Authenticated(token): Authenticated,
    tenant_id: web::Path<String>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    // A path id that is not a UUID names no tenant: 1004, after the partner's 401 (SPEC §2).
    let tenant_id = Uuid::try_parse(&tenant_id).ok();
    list_lines(&state, token, tenant_id, &request).await
}

/// The list itself, shared by the tenant route and the legacy route.
pub async fn list_lines(
    state: &AppState,
    token: PartnerToken,
    tenant_id: Option<Uuid>,
    request: &HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let params = QueryParams::parse(request.query_string());
    let parsed = PageRequest::parse(&params, state.page_limits)
        .and_then(|page| Ok((page, LineFilter::parse(&params)?)));
    let (page, filter) = match parsed {
        Ok(parsed) => parsed,
        Err(invalid) => return Err(reject_parameters(state, token, invalid).await),
    };
    let coding = Coding::negotiate(request);
    // Only an existing tenant's page is kept, so only those are looked up.
    let lookup = match (state.listing_cache.as_deref(), tenant_id) {
        (Some(cache), Some(tenant_id)) => {
            cache.lookup(PageKey::new(token, tenant_id, filter, page, coding))
        }
        _ => Lookup::Bypass,
    };
    let pending = match lookup {
        Lookup::Hit(encoded) => return Ok(encoded.response()),
        Lookup::Miss(pending) => Some(pending),
        Lookup::Bypass => None,
    };
    match store::caller_lines::list(&state.pool, token, tenant_id, filter, page).await? {
        LineListing::PartnerRejected => Err(Rejection::PartnerRejected.into()),
        LineListing::TenantMissing => Err(ApiError::TenantNotFound),
        LineListing::Found { tenant, listing } => {
            let items = listing
                .items
                .iter()
                .map(|line| LineItem::new(line, &tenant, state.display_timezone))
                .collect();
            let json = list_body("查看线路成功", page, listing.total, items)?;
            let encoded = EncodedPage::new(json, coding);
            if let Some(pending) = pending {
                pending.keep(encoded.clone());
            }
            Ok(encoded.response())
        }
    }
}

/// 401 outranks 1001 (SPEC §2): a revoked or deleted partner learns nothing about its query.
/// Only this rare path pays for a separate check; the list statement checks in passing.
pub async fn reject_parameters(
    state: &AppState,
    token: PartnerToken,
    invalid: InvalidParameter,
) -> ApiError {
    match store::partner_is_active(&state.pool, token).await {
        Ok(true) => invalid.into(),
        Ok(false) => Rejection::PartnerRejected.into(),
        Err(error) => error.into(),
    }
}
