//! The HTTP layer. `routes` below is the whole route table; each handler is a file of
//! `routes/`, what responses are made of is in `response/` (the list's body, its coding and
//! validator, the reference's files), and the plumbing around the handlers sits beside them:
//! extractors (the authenticated partner, checked against its rate limit from `rate_limit`),
//! the error envelope, middleware, the client behind a balancer, the OpenAPI document and the
//! shared state.

pub mod client_address;
pub mod error;
pub mod extract;
pub mod middleware;
pub mod openapi;
pub mod response;
pub mod routes;
pub mod state;

use actix_web::middleware::from_fn;
use actix_web::{HttpResponse, Route, guard, web};

use error::ApiError;
use routes::{caller_lines, legacy, ops, reference, tenants};

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(
            web::scope("/agent-api")
                .wrap(from_fn(response::etag::revalidate))
                .wrap(from_fn(middleware::refuse_while_schema_behind))
                .service(get("/tenant", read().to(tenants::list)))
                .service(get(
                    "/tenant/{id}/callerline",
                    read().to(caller_lines::list_on_tenant),
                ))
                .service(get(
                    "/callerline",
                    read()
                        .to(caller_lines::list_on_default_tenant)
                        .wrap(from_fn(legacy::sunset)),
                )),
        )
        .service(get("/healthz", read().to(ops::healthz)))
        .service(get("/readyz", read().to(ops::readyz)))
        .service(get("/openapi.json", read().to(reference::openapi)))
        .service(web::redirect("/docs", "/docs/"))
        .service(get("/docs/{path:.*}", read().to(reference::docs)));
}

/// The operations listener's table: metrics, and the same health checks.
pub fn ops_routes(config: &mut web::ServiceConfig) {
    config
        .service(get("/metrics", read().to(ops::metrics)))
        .service(get("/healthz", read().to(ops::healthz)))
        .service(get("/readyz", read().to(ops::readyz_in_detail)));
}

/// GET, and HEAD, which answers what GET does without the body (RFC 9110 §9.3.2).
fn read() -> Route {
    web::route().guard(guard::Any(guard::Get()).or(guard::Head()))
}

/// A resource whose handler's panics answer the 500 envelope; a method its route does not take
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
