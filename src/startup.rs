//! Builds the server from settings and an already-bound listener, so tests run exactly what
//! `agent-api serve` runs, on port 0.

use std::net::TcpListener;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServerHandle, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{App, HttpServer, middleware, web};
use anyhow::Context;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sqlx::PgPool;

use crate::background::Background;
use crate::cache::memory::Slot;
use crate::cache::standings::{self, Known};
use crate::cache::{Freshness, Memory, PageKey, Pages, Warmth, default_tenant};
use crate::clock::Clock;
use crate::config::Settings;
use crate::exit::ActionNeeded;
use crate::health::Health;
use crate::http::response::asset::Reference;
use crate::http::state::AppState;
use crate::rate_limit::RateLimits;
use crate::store::Database;
use crate::store::feed::changes::FeedSettings;
use crate::store::replicas::Replicas;
use crate::tokens::KeyRing;
use crate::{http, store, telemetry, tls};

pub struct Application {
    api: Server,
    ops: Server,
    port: u16,
    ops_port: u16,
    background: Background,
    /// How long stopping waits for requests in flight, then for background work.
    grace: Duration,
}

impl Application {
    /// Builds both servers and starts the background work; returns once memory is trusted
    /// (or after `listing_cache.max_staleness_ms` if the feed cannot be heard), with every
    /// partner's standing and the default tenant read, so that the first requests after a
    /// restart are not a herd of misses.
    pub async fn build(
        settings: &Settings,
        listener: TcpListener,
        pool: PgPool,
        clock: Clock,
    ) -> anyhow::Result<Self> {
        let port = listener.local_addr()?.port();
        // First: what is measured from here on is recorded.
        let metrics = prometheus();
        let health = Arc::new(Health::default());
        health.check(&pool).await;
        // Another project's database: refused before anything is served from it or started on it.
        if let Some(refusal) = health.schema().refusal() {
            return Err(ActionNeeded(refusal).into());
        }
        let background = Background::default();
        let freshness = Arc::new(Freshness::new(settings.listing_cache.max_staleness()));
        let replicas = Replicas::from_settings(&settings.database)?;
        if let Some(replicas) = &replicas {
            replicas.watch(&pool, &background).await;
        }
        let feed = FeedSettings::new(settings, &pool, replicas.is_some())?;
        let following = freshness.clone();
        store::feed::changes::follow(&background, feed, move |change| following.apply(change));
        let cache = &settings.listing_cache;
        let state = web::Data::new(AppState {
            database: Database::new(pool.clone(), replicas, &settings.database),
            keys: KeyRing::from_settings(&settings.auth)?,
            page_limits: settings.api.page_limits(),
            display_timezone: settings.api.display_timezone,
            legacy: settings.legacy.clone(),
            rate_limits: RateLimits::from_settings(&settings.rate_limit, &background)?,
            trusted_proxies: settings.rate_limit.trusted_proxies.clone(),
            clock,
            metrics,
            pages: cache.enabled.then(|| {
                let pages = Pages::new(cache.max_bytes, cache.max_partner_share);
                Memory::new(pages, freshness.clone(), PageKey::depends)
            }),
            standings: Arc::new(Memory::new(
                Known::default(),
                freshness.clone(),
                standings::depends,
            )),
            default_tenant: Arc::new(Memory::new(
                Slot::default(),
                freshness.clone(),
                default_tenant::depends,
            )),
            freshness,
            health,
            reference: Reference::new(&http::openapi::document(
                settings.api.page_limits(),
                settings.legacy.sunset_at,
            )),
        });
        metrics::gauge!("agent_api_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        // Counters of rare events exist from the start, at 0, so rates over them are defined.
        for rare in [
            "agent_api_http_unreadable_requests_total",
            "agent_api_listing_announcements_ignored_total",
        ] {
            metrics::counter!(rare).increment(0);
        }
        state
            .freshness
            .trusted_within(settings.listing_cache.max_staleness())
            .await;
        let warmth = Warmth {
            database: state.database.clone(),
            freshness: state.freshness.clone(),
            standings: state.standings.clone(),
            default_tenant: state.default_tenant.clone(),
        };
        warmth.standings().await;
        warmth.default_tenant().await;
        background.spawn(warmth.keep());
        background.spawn(housekeeping(state.clone().into_inner()));
        let health = state.health.clone();
        background.spawn(async move { health.watch(pool).await });
        let api = api_server(settings, listener, state.clone())?;
        let ops_address = (settings.ops.host.as_str(), settings.ops.port);
        let ops_listener = TcpListener::bind(ops_address).map_err(|error| {
            ActionNeeded(format!(
                "cannot listen on {}:{} for operations (APP__OPS__HOST, APP__OPS__PORT): {error}",
                settings.ops.host, settings.ops.port
            ))
        })?;
        let ops_port = ops_listener.local_addr()?.port();
        let ops = ops_server(settings, ops_listener, state)?;
        Ok(Self {
            api,
            ops,
            port,
            ops_port,
            background,
            grace: Duration::from_secs(settings.server.shutdown_grace_seconds),
        })
    }

    /// The port partners call.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of `/metrics` (and `/healthz`, `/readyz`), for operators only.
    pub fn ops_port(&self) -> u16 {
        self.ops_port
    }

    /// What stops this application from the outside, as SIGTERM does.
    pub fn stopper(&self) -> Stopper {
        Stopper {
            api: self.api.handle(),
            background: self.background.clone(),
        }
    }

    /// Runs until `Stopper::stop` (which `serve` calls on SIGTERM or SIGINT), letting in-flight
    /// requests finish, then stops the operators' server and ends the background work.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let ops = self.ops.handle();
        let ops_server = tokio::spawn(self.ops);
        let served = self.api.await;
        ops.stop(true).await;
        let _ = ops_server.await;
        let left = self.background.stop(self.grace).await;
        if left > 0 {
            tracing::warn!(
                left,
                "background tasks still running after the grace period"
            );
        }
        served
    }
}

/// Stops an application as SIGTERM would, and tells what is left of its background work.
#[derive(Clone)]
pub struct Stopper {
    api: ServerHandle,
    background: Background,
}

impl Stopper {
    /// Stops serving, gracefully; `run_until_stopped` then ends the background work.
    pub async fn stop(&self) {
        self.api.stop(true).await;
    }

    /// Background tasks still running.
    pub fn background_tasks(&self) -> usize {
        self.background.running()
    }

    /// Ends the background work without waiting (for a `Drop`).
    pub fn cancel_background(&self) {
        self.background.cancel();
    }
}

/// An app of `routes` over the shared state, every request with its id, log line and metrics.
fn app(
    state: web::Data<AppState>,
    routes: fn(&mut web::ServiceConfig),
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(state)
        .wrap(middleware::from_fn(http::middleware::request_context))
        .configure(routes)
        .default_service(web::to(http::not_found))
}

/// The partners' server: the API, its reference, and health checks for the balancer.
fn api_server(
    settings: &Settings,
    listener: TcpListener,
    state: web::Data<AppState>,
) -> anyhow::Result<Server> {
    // Signals are `serve`'s to handle (SIGINT too drains: actix would stop at once).
    let server = HttpServer::new(move || app(state.clone(), http::routes))
        .disable_signals()
        .max_connections(settings.server.max_connections_per_worker)
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
    .context("cannot listen")?;
    Ok(server.run())
}

/// The operators' server, on its own (by default loopback) address: `/metrics` names partners
/// and costs CPU to render, so it is not on the partners' port.
fn ops_server(
    settings: &Settings,
    listener: TcpListener,
    state: web::Data<AppState>,
) -> anyhow::Result<Server> {
    let server = HttpServer::new(move || app(state.clone(), http::ops_routes))
        .workers(1)
        .disable_signals()
        .client_request_timeout(Duration::from_millis(
            settings.server.client_request_timeout_ms,
        ))
        .shutdown_timeout(settings.server.shutdown_grace_seconds)
        .listen(listener)
        .context("cannot listen for operations")?;
    Ok(server.run())
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

/// Periodic upkeep: the Prometheus recorder buffers every histogram sample until upkeep folds
/// it in (without this, memory grows with each request: found by the soak in bench/), and
/// rate-limit buckets of callers gone quiet are forgotten.
async fn housekeeping(state: Arc<AppState>) {
    const TICK: Duration = Duration::from_secs(5);
    const FORGET_EVERY: u32 = 12; // ticks: a minute
    const COUNT_ROWS_EVERY: u32 = 3; // ticks: Prometheus's usual scrape interval
    let mut tick = tokio::time::interval(TICK);
    for round in 0_u32.. {
        tick.tick().await;
        state.metrics.run_upkeep();
        telemetry::strangers().report_left_out();
        telemetry::forged_announcements().report_left_out();
        // Asked here, one at a time, never by a scrape: a scraper (or 64 of them) costs the
        // database nothing.
        if round % COUNT_ROWS_EVERY == 0 {
            let rows = store::caller_lines::most_count_rows_of_a_pair(&state.database);
            if let Ok(Ok(rows)) = tokio::time::timeout(TICK, rows).await {
                metrics::gauge!("agent_api_line_count_rows_max").set(rows as f64);
            }
        }
        if round % FORGET_EVERY == FORGET_EVERY - 1
            && let Some(limits) = &state.rate_limits
        {
            limits.forget_idle();
        }
    }
}
