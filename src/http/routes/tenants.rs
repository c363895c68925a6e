//! GET /agent-api/tenant: the partner's cloud nodes (SPEC §2b), so partners leaving the legacy
//! route can learn their tenant ids.

use actix_web::{HttpRequest, HttpResponse, web};

use crate::domain::query::{PageRequest, QueryParams};
use crate::http::error::ApiError;
use crate::http::extract::Authenticated;
use crate::http::response::body::{TenantListItem, list_body};
use crate::http::response::encoding::{Coding, EncodedPage};
use crate::http::state::AppState;
use crate::store;

#[tracing::instrument(name = "list_tenants", skip_all)]
pub async fn list(
    state: web::Data<AppState>,
    Authenticated(token): Authenticated,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let params = QueryParams::parse(request.query_string());
    let page = PageRequest::parse(&params, state.page_limits)?;
    let listing = store::tenants::list_for_partner(&state.database, token, page).await?;
    let items = listing.items.iter().map(TenantListItem::from).collect();
    let json = list_body("查看云节点成功", page, listing.total, items)?;
    Ok(EncodedPage::new(json, Coding::negotiate(&request)).response())
}
