//! The partners' reference: `/openapi.json`, and `/docs` (Swagger UI), each file made and
//! compressed once (`response::asset`).

use actix_web::{HttpRequest, HttpResponse, web};

use crate::http::error::ApiError;
use crate::http::state::AppState;

pub async fn openapi(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    state.reference.document().respond(&request).await
}

pub async fn docs(
    state: web::Data<AppState>,
    path: web::Path<String>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let asset = state
        .reference
        .swagger_file(&path)
        .ok_or(ApiError::NotFound)?;
    Ok(asset.respond(&request).await)
}
