//! GET /agent-api/tenant/{id}/callerline (SPEC §2), and the same list on the default tenant for
//! the legacy route (SPEC §3, which `legacy::sunset` wraps).

use actix_web::{HttpRequest, HttpResponse, web};
use uuid::Uuid;

use crate::domain::partners::PartnerToken;
use crate::domain::query::{LineFilter, PageRequest, QueryParams};
use crate::http::error::ApiError;
use crate::http::extract::{Authenticated, DefaultTenant, unless_partner_rejected};
use crate::http::listing_cache::{Lookup, PageKey};
use crate::http::response::body::{LineItem, list_body};
use crate::http::response::encoding::{Coding, EncodedPage};
use crate::http::state::AppState;
use crate::store;

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

#[tracing::instrument(name = "list_caller_lines_legacy", skip_all)]
pub async fn list_on_default_tenant(
    state: web::Data<AppState>,
    Authenticated(token): Authenticated,
    DefaultTenant(tenant_id): DefaultTenant,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    list_lines(&state, token, tenant_id, &request).await
}

async fn list_lines(
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
        Err(invalid) => return Err(unless_partner_rejected(state, token, invalid.into()).await),
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
    let found = store::caller_lines::list(&state.pool, token, tenant_id, filter, page)
        .await?
        .ok_or(ApiError::TenantNotFound)?;
    let items = found
        .lines
        .items
        .iter()
        .map(|line| LineItem::new(line, &found.tenant, state.display_timezone))
        .collect();
    let json = list_body("查看线路成功", page, found.lines.total, items)?;
    let encoded = EncodedPage::new(json, coding);
    if let Some(pending) = pending {
        pending.keep(encoded.clone());
    }
    Ok(encoded.response())
}
