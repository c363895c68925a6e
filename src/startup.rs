//! Builds the server from settings and an already-bound listener, so tests run exactly what
//! `agent-api serve` runs, on port 0.

use std::net::TcpListener;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{App, HttpServer, middleware, web};
use anyhow::Context;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use secrecy::ExposeSecret;
use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;

use crate::cache::{DefaultTenant, Freshness, Pages, Standings};
use crate::clock::Clock;
use crate::config::Settings;
use crate::http::routes::reference::Reference;
use crate::http::state::AppState;
use crate::rate_limit::RateLimits;
use crate::store::changes::FeedSettings;
use crate::store::reads::Reads;
use crate::store::replicas::Replicas;
use crate::tokens::KeyRing;
use crate::{http, store, telemetry, tls};

pub struct Application {
    api: Server,
    ops: Server,
    port: u16,
    ops_port: u16,
}

impl Application {
    pub async fn build(
        settings: &Settings,
        listener: TcpListener,
        pool: PgPool,
        clock: Clock,
    ) -> anyhow::Result<Self> {
        let port = listener.local_addr()?.port();
        let freshness = Arc::new(Freshness::new(settings.listing_cache.max_staleness()));
        let replicas = Replicas::from_settings(&settings.database)?;
        if let Some(replicas) = &replicas {
            replicas.watch(pool.clone());
        }
        follow_changes(&pool, settings, &freshness, replicas.is_some())?;
        let default_tenant = Arc::new(DefaultTenant::new(freshness.clone()));
        keep_default_tenant_current(pool.clone(), default_tenant.clone(), &freshness).await;
        let cache = &settings.listing_cache;
        let state = web::Data::new(AppState {
            reads: Reads::new(pool.clone(), replicas),
            pool,
            keys: KeyRing::from_settings(&settings.auth)?,
            page_limits: settings.api.page_limits(),
            display_timezone: settings.api.display_timezone,
            legacy: settings.legacy.clone(),
            rate_limits: RateLimits::from_settings(&settings.rate_limit)?,
            trusted_proxies: settings.rate_limit.trusted_proxies.clone(),
            clock,
            metrics: prometheus(),
            pages: cache
                .enabled
                .then(|| Pages::new(cache.max_bytes, cache.max_partner_share, freshness.clone())),
            standings: Standings::new(freshness.clone()),
            default_tenant,
            freshness,
            reference: Reference::new(&http::openapi::document(
                settings.api.page_limits(),
                settings.legacy.sunset_at,
            )),
        });
        metrics::gauge!("agent_api_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        housekeeping(Arc::downgrade(&state.clone().into_inner()));
        let api = api_server(settings, listener, state.clone())?;
        let ops_address = (settings.ops.host.as_str(), settings.ops.port);
        let ops_listener = TcpListener::bind(ops_address).with_context(|| {
            format!(
                "cannot listen on {}:{} for operations (APP__OPS__HOST/APP__OPS__PORT)",
                settings.ops.host, settings.ops.port
            )
        })?;
        let ops_port = ops_listener.local_addr()?.port();
        let ops = ops_server(settings, ops_listener, state)?;
        Ok(Self {
            api,
            ops,
            port,
            ops_port,
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

    /// Runs until SIGTERM or SIGINT, letting in-flight requests finish. The partners' server
    /// alone answers signals (a server that has stopped stops the whole runtime); the
    /// operators' server stops after it.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let ops = self.ops.handle();
        let ops_server = tokio::spawn(self.ops);
        let served = self.api.await;
        ops.stop(true).await;
        let _ = ops_server.await;
        served
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
    let server = HttpServer::new(move || app(state.clone(), http::routes))
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

/// Follows the change feed into `freshness`: heartbeats four times within the staleness bound,
/// a new connection when none has come back for twice the bound, and the primary's WAL
/// positions when standbys need a watermark.
fn follow_changes(
    pool: &PgPool,
    settings: &Settings,
    freshness: &Arc<Freshness>,
    follow_positions: bool,
) -> anyhow::Result<()> {
    let bound = settings.listing_cache.max_staleness();
    let listen = match &settings.database.feed_url {
        Some(url) => url
            .expose_secret()
            .parse::<PgConnectOptions>()
            .context("DATABASE_FEED_URL is not a usable Postgres URL")?,
        None => (*pool.connect_options()).clone(),
    };
    let feed = FeedSettings {
        listen,
        notify: (*pool.connect_options()).clone(),
        heartbeat: bound / 4,
        give_up_after: (bound * 2).max(Duration::from_secs(1)),
        follow_positions,
    };
    let follower = Arc::downgrade(freshness);
    store::changes::follow(pool, feed, move |change| {
        if let Some(freshness) = follower.upgrade() {
            freshness.apply(change);
        }
    });
    Ok(())
}

/// Reads the default tenant before serving (so even the first stranger's answer names the
/// successor, SPEC §3) and again whenever a tenant changes or the feed reconnects, so the
/// legacy route never needs the database to name it. A failed read is retried every second;
/// requests read it themselves meanwhile.
async fn keep_default_tenant_current(
    pool: PgPool,
    memory: Arc<DefaultTenant>,
    freshness: &Arc<Freshness>,
) {
    const RETRY: Duration = Duration::from_secs(1);
    async fn read(pool: &PgPool, memory: &DefaultTenant) -> bool {
        let read_at = memory.stamp();
        let id = store::tenants::default_tenant_id(pool).await;
        id.map(|id| memory.keep(id, read_at)).is_ok()
    }
    let mut known = read(&pool, &memory).await;
    let freshness = Arc::downgrade(freshness);
    tokio::spawn(async move {
        let refresh = async {
            loop {
                if known {
                    let Some(freshness) = freshness.upgrade() else {
                        return;
                    };
                    freshness.tenants_changed.notified().await;
                } else {
                    tokio::time::sleep(RETRY).await;
                }
                known = read(&pool, &memory).await;
            }
        };
        tokio::select! {
            () = refresh => {}
            () = pool.close_event() => {}
        }
    });
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
            telemetry::refusals().report_left_out();
            if round % FORGET_EVERY == 0
                && let Some(limits) = &state.rate_limits
            {
                limits.forget_idle();
            }
        }
    });
}
