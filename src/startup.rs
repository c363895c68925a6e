//! Builds the server from settings and an already-bound listener, so tests run exactly what
//! `agent-api serve` runs, on port 0.

use std::net::TcpListener;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, middleware, web};
use anyhow::Context;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sqlx::PgPool;
use utoipa_swagger_ui::{Config as SwaggerConfig, SwaggerUi};

use crate::clock::Clock;
use crate::config::Settings;
use crate::http::listing_cache::ListingCache;
use crate::http::rate_limit::RateLimits;
use crate::http::state::AppState;
use crate::tokens::KeyRing;
use crate::{http, store, tls};

pub struct Application {
    server: Server,
    port: u16,
}

impl Application {
    pub fn build(
        settings: &Settings,
        listener: TcpListener,
        pool: PgPool,
        clock: Clock,
    ) -> anyhow::Result<Self> {
        let port = listener.local_addr()?.port();
        let listing_cache = settings.listing_cache.enabled.then(|| {
            let cache = Arc::new(ListingCache::new(settings.listing_cache.max_bytes));
            let follower = Arc::downgrade(&cache);
            store::changes::follow(&pool, settings.listing_cache.heartbeat(), move |change| {
                if let Some(cache) = follower.upgrade() {
                    cache.apply(change);
                }
            });
            cache
        });
        let state = web::Data::new(AppState {
            pool,
            keys: KeyRing::from_settings(&settings.auth)?,
            page_limits: settings.api.page_limits(),
            display_timezone: settings.api.display_timezone,
            legacy: settings.legacy.clone(),
            rate_limits: RateLimits::from_settings(&settings.rate_limit),
            clock,
            metrics: prometheus(),
            listing_cache,
        });
        metrics::gauge!("agent_api_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        housekeeping(Arc::downgrade(&state.clone().into_inner()));
        let app_state = state.clone();
        let reference = http::openapi::document(state.page_limits, settings.legacy.sunset_at);
        let server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .wrap(middleware::Compress::default())
                .wrap(middleware::from_fn(http::middleware::request_context))
                .configure(http::routes)
                .service(reference_page(reference.clone()))
                .default_service(web::to(http::not_found))
        })
        .keep_alive(Duration::from_secs(settings.server.keep_alive_seconds))
        .client_request_timeout(Duration::from_millis(
            settings.server.client_request_timeout_ms,
        ))
        .shutdown_timeout(settings.server.shutdown_grace_seconds);
        let server = match settings.server.workers {
            0 => server,
            workers => server.workers(workers),
        };
        let server = match (&settings.tls.cert_path, &settings.tls.key_path) {
            (Some(cert), Some(key)) => {
                let config = tls::server_config(cert, key)?;
                server.listen_rustls_0_23(listener, config)
            }
            _ => server.listen(listener),
        }
        .context("cannot listen")?
        .run();
        Ok(Self { server, port })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs until SIGTERM or SIGINT, letting in-flight requests finish.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// `/docs`: Swagger UI from assets inside the binary, reading `/openapi.json`; nothing is
/// fetched from elsewhere (no validator badge), so it works offline.
fn reference_page(document: utoipa::openapi::OpenApi) -> SwaggerUi {
    SwaggerUi::new("/docs/{_:.*}")
        .url("/openapi.json", document)
        .config(
            SwaggerConfig::default()
                .doc_expansion("full")
                .validator_url("none")
                .try_it_out_enabled(true)
                .persist_authorization(true)
                .display_request_duration(true),
        )
}

/// The process-wide Prometheus recorder, installed on first use.
fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets(&[
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ])
                .expect("the bucket list is not empty")
                .install_recorder()
                .expect("no other metrics recorder is installed")
        })
        .clone()
}

/// Periodic upkeep while the app lives: the Prometheus recorder buffers every histogram
/// sample until upkeep folds it in (without this, memory grows with each request: found by
/// the soak in bench/), and rate-limit buckets of callers gone quiet are forgotten.
fn housekeeping(state: Weak<AppState>) {
    const TICK: Duration = Duration::from_secs(5);
    const FORGET_EVERY: u32 = 12; // ticks: a minute
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        for round in 1_u32.. {
            tick.tick().await;
            let Some(state) = state.upgrade() else { break };
            state.metrics.run_upkeep();
            if round % FORGET_EVERY == 0
                && let Some(limits) = &state.rate_limits
            {
                limits.forget_idle();
            }
        }
    });
}
