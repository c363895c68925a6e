//! GET /agent-api/tenant/{id}/callerline (SPEC §2), and the same list on the default tenant for
//! the legacy route (SPEC §3, which `legacy::sunset` wraps).

use actix_web::{HttpRequest, HttpResponse, web};
use uuid::Uuid;

use crate::cache::{Keep, PageKey, Ticket};
use crate::domain::page::PageMeta;
use crate::domain::partners::PartnerToken;
use crate::domain::query::{LineFilter, PageRequest, QueryParams};
use crate::http::error::ApiError;
use crate::http::extract::{Authenticated, DefaultTenant};
use crate::http::response::body::{LineItem, list_body};
use crate::http::response::encoding::{Coding, EncodedPage};
use crate::http::state::{AppState, LinePage};
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
    let page = PageRequest::parse(&params, state.page_limits)?;
    let filter = LineFilter::parse(&params)?;
    let coding = Coding::negotiate(request);
    let read = async |ticket: Ticket| {
        let found = store::caller_lines::list(
            &state.database,
            ticket.watermark(),
            token,
            tenant_id,
            filter,
            page,
        )
        .await?
        .ok_or(ApiError::TenantNotFound)?;
        let items = found
            .lines
            .items
            .iter()
            .map(|line| LineItem::new(line, &found.tenant, state.display_timezone))
            .collect();
        let json = list_body("查看线路成功", page, found.lines.total, items)?;
        // Pages past the last cost little to read and are endless in number: none is kept.
        let keep = match page.page <= PageMeta::new(page, found.lines.total).last_page {
            true => Keep::Yes,
            false => Keep::No,
        };
        Ok::<_, ApiError>((EncodedPage::new(json, coding), keep))
    };
    // Only an existing tenant's page is kept, so only those are looked up.
    let encoded = match (&state.pages, tenant_id) {
        (Some(pages), Some(tenant_id)) => {
            let key = PageKey {
                partner_id: token.partner_id,
                tenant_id,
                variant: LinePage {
                    filter,
                    page,
                    coding,
                },
            };
            let (encoded, outcome) = pages.get_or_read(&key, read).await?;
            metrics::counter!("agent_api_listing_cache_total", "outcome" => outcome.label())
                .increment(1);
            encoded
        }
        _ => read(state.freshness.ticket()).await?.0,
    };
    Ok(encoded.response())
}
