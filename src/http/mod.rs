//! The HTTP layer. `routes` below is the whole route table; each handler is a file of
//! `routes/`, the parts every list response is made of are in `response/`, and the plumbing
//! around the handlers sits beside them: extractors, the error envelope, middleware, rate
//! limits, the OpenAPI reference and the shared state.

pub mod error;
pub mod extract;
pub mod middleware;
pub mod openapi;
pub mod rate_limit;
pub mod response;
pub mod routes;
pub mod state;

use actix_web::middleware::from_fn;
use actix_web::{HttpResponse, Route, web};

use error::ApiError;
use routes::{caller_lines, legacy, ops, tenants};

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(
            web::scope("/agent-api")
                .wrap(from_fn(response::etag::revalidate))
                .service(get("/tenant", web::get().to(tenants::list)))
                .service(get(
                    "/tenant/{id}/callerline",
                    web::get().to(caller_lines::list_on_tenant),
                ))
                .service(get(
                    "/callerline",
                    web::get()
                        .to(caller_lines::list_on_default_tenant)
                        .wrap(from_fn(legacy::sunset)),
                )),
        )
        .service(get("/healthz", web::get().to(ops::healthz)))
        .service(get("/readyz", web::get().to(ops::readyz)))
        .service(web::redirect("/docs", "/docs/"));
}

/// The operations listener's table: metrics, and the same health checks.
pub fn ops_routes(config: &mut web::ServiceConfig) {
    config
        .service(get("/metrics", web::get().to(ops::metrics)))
        .service(get("/healthz", web::get().to(ops::healthz)))
        .service(get("/readyz", web::get().to(ops::readyz)));
}

/// A GET-only resource whose handler's panics answer the 500 envelope; any other method
/// answers the 405 envelope.
fn get(path: &str, route: Route) -> actix_web::Resource {
    web::resource(path)
        .route(route.wrap(from_fn(middleware::catch_panic)))
        .default_service(web::to(method_not_allowed))
}

/// The app's default service: the 404 envelope, under `/agent-api/` and elsewhere.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}
