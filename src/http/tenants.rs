//! GET /agent-api/tenant: the partner's cloud nodes (SPEC §2b), so partners leaving the legacy
//! route can learn their tenant ids.

use actix_web::{HttpRequest, HttpResponse, web};

use super::AppState;
use super::authn::Authenticated;
use super::callerlines::reject_parameters;
use super::error::ApiError;
use super::wire::{TenantListItem, list_response};
use crate::auth::Rejection;
use crate::domain::query::{PageRequest, QueryParams};
use crate::store;

#[tracing::instrument(name = "list_tenants", skip_all)]
pub async fn list(
    state: web::Data<AppState>,
    Authenticated(token): Authenticated,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let params = QueryParams::parse(request.query_string());
    let page = match PageRequest::parse(&params, state.page_limits) {
        Ok(page) => page,
        Err(invalid) => return Err(reject_parameters(&state, token, invalid).await),
    };
    let listing = store::tenants::list_for_partner(&state.pool, token, page)
        .await?
        .ok_or(ApiError::Unauthorized(Rejection::PartnerRejected))?;
    let items = listing.items.iter().map(TenantListItem::from).collect();
    Ok(list_response("查看云节点成功", page, listing.total, items))
}
