//! The `agent-api` command line (SPEC §5): serve, migrate, seed-demo, token issue/inspect.

use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use clap::{Parser, Subcommand};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use crate::clock::system_clock;
use crate::config::{PoolMode, Settings};
use crate::exit::ActionNeeded;
use crate::startup::{Application, Stopper};
use crate::store::postgres::wait::{answering, connect, connect_options};
use crate::tokens::KeyRing;
use crate::{store, telemetry, tls};

#[derive(Debug, Parser)]
#[command(
    name = "agent-api",
    version,
    about = "Partner API of the cloud call-centre platform",
    after_help = "Settings come from the environment (APP__<SECTION>__<KEY>, DATABASE_URL), over an \
optional TOML file, over defaults: .env.example lists every one. Exit codes: 0 done; 2 a setting \
or the database needs the operator (the line says what); 1 anything else."
)]
pub struct Cli {
    /// A TOML settings file; defaults to config/agent-api.toml when that exists.
    #[arg(long, global = true, env = "APP_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API until SIGTERM or SIGINT (both drain requests in flight, then exit 0).
    #[command(
        after_help = "Needs DATABASE_URL (the primary) and APP__AUTH__JWT_SECRET (32 bytes or more) \
unless public keys are configured; listens on APP__SERVER__HOST:APP__SERVER__PORT (0.0.0.0:8080) \
and, for /metrics, APP__OPS__HOST:APP__OPS__PORT (127.0.0.1:8081)."
    )]
    Serve,
    /// Apply pending database migrations; harmless when there are none.
    #[command(
        after_help = "Needs DATABASE_URL (the tables' owner). Its own session: APP__MIGRATE__LOCK_TIMEOUT_MS \
(3000), APP__MIGRATE__STATEMENT_TIMEOUT_MS (0, none), APP__MIGRATE__RETRIES (5), \
APP__MIGRATE__RETRY_WAIT_MS (2000)."
    )]
    Migrate,
    /// Insert or restore the demo tenant, partner, customer and lines (idempotent).
    #[command(after_help = "Needs DATABASE_URL.")]
    SeedDemo,
    /// Print the OpenAPI document (as served at /openapi.json) on stdout.
    Openapi,
    /// Partner tokens.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a signed token for a partner, and nothing else, on stdout.
    #[command(
        after_help = "Needs APP__AUTH__JWT_SECRET (or a key with a private_key in the settings \
file). With DATABASE_URL set, the partner is checked first: an unknown, deleted or non-partner id \
is refused."
    )]
    Issue {
        /// The partner's id (users.id of a row with type = 'partner'): the token's `sub`.
        #[arg(long)]
        partner: Uuid,
        /// Lifetime such as `1h`, `30d`; defaults to auth.default_ttl.
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Option<Duration>,
        /// The key to sign with; defaults to auth.signing_kid (or the HS256 secret).
        #[arg(long)]
        kid: Option<String>,
    },
    /// Decode a token and say whether this server would accept it, and if not which check
    /// refused it.
    #[command(
        after_help = "Needs APP__AUTH__JWT_SECRET (or the public keys) to check the signature, and \
DATABASE_URL to check the partner."
    )]
    Inspect {
        /// The token, as partners send it after `Bearer `.
        token: String,
    },
}

/// Runs a parsed command line with loaded settings.
pub async fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
    match command {
        Command::Serve => {
            telemetry::init_stdout(&settings.log);
            serve(settings).await
        }
        Command::Migrate => {
            telemetry::init_stderr(&settings.log);
            let options = connect_options(&settings)?;
            let session = store::postgres::migrate::session_options(&options, &settings.migrate);
            answering(&settings, &options, async || {
                PgConnection::connect_with(&session).await?.close().await
            })
            .await?;
            store::postgres::migrate::run(&options, &settings.migrate).await?;
            tracing::info!("the database is at this build's schema");
            Ok(())
        }
        Command::SeedDemo => {
            telemetry::init_stderr(&settings.log);
            let pool = connect(&settings).await?;
            store::demo::seed(&pool)
                .await
                .context("seeding the demo data failed")?;
            tracing::info!(partner_id = %store::demo::DEMO_PARTNER_ID, "demo data in place");
            Ok(())
        }
        Command::Token(TokenCommand::Issue { partner, ttl, kid }) => {
            let keys = KeyRing::from_settings(&settings.auth)?;
            let ttl = match ttl {
                Some(ttl) => ttl,
                None => settings.auth.default_ttl()?,
            };
            if settings.database.url.is_some() {
                let database =
                    store::Database::new(connect(&settings).await?, None, &settings.database);
                if let Some(refused) =
                    store::partners::why_refused(&database, partner, None).await?
                {
                    return Err(ActionNeeded(format!("no token for {partner}: {refused}")).into());
                }
            }
            let issued_at = next_whole_second().await;
            answer(&keys.issue(partner, ttl, kid.as_deref(), issued_at)?)
        }
        Command::Token(TokenCommand::Inspect { token }) => inspect(&settings, &token).await,
        Command::Openapi => {
            let document = crate::http::openapi::document(
                settings.api.page_limits(),
                settings.legacy.sunset_at,
            );
            answer(&document.to_pretty_json()?)
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    // Keys first: a missing secret is reported at once, not after waiting for the database.
    KeyRing::from_settings(&settings.auth)?;
    tls::install_crypto_provider();
    let pool = connect(&settings).await?;
    store::refuse_standby(&pool).await?;
    if settings.database.pool_mode == PoolMode::Session
        && let Some(reason) = store::session_mode_not_in_force(&pool, &settings.database).await?
    {
        return Err(ActionNeeded(format!("{reason}: {}", store::TRANSACTION_POOLER_ADVICE)).into());
    }
    let address = (settings.server.host.as_str(), settings.server.port);
    let listener = TcpListener::bind(address).map_err(|error| {
        ActionNeeded(format!(
            "cannot listen on {}:{} (APP__SERVER__HOST, APP__SERVER__PORT): {error}",
            settings.server.host, settings.server.port
        ))
    })?;
    let application = Application::build(&settings, listener, pool.clone(), system_clock()).await?;
    // Before saying it serves: from then on a signal must find its handler.
    tokio::spawn(stop_on_signal(application.stopper())?);
    tracing::info!(
        port = application.port(),
        ops_port = application.ops_port(),
        tls = settings.tls.cert_path.is_some(),
        "agent-api serving"
    );
    application.run_until_stopped().await?;
    // What spans are queued go to the collector, if one is configured (within seconds).
    tokio::task::spawn_blocking(crate::traces::flush).await?;
    // Bounded: a database that went away meanwhile does not hold the exit.
    let _ = tokio::time::timeout(Duration::from_secs(5), pool.close()).await;
    tracing::info!("agent-api stopped");
    Ok(())
}

/// SIGTERM (an orchestrator) and SIGINT (Ctrl-C) alike: stop accepting, let requests in flight
/// finish within the grace period, then end the background work and exit 0. The handlers are
/// in place when this returns; the future waits for the first signal.
fn stop_on_signal(stopper: Stopper) -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        let signal = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        tracing::info!(signal, "stopping: letting requests in flight finish");
        stopper.stop().await;
    })
}

/// A command's answer on stdout. A reader that has gone away (`agent-api openapi | head`) is not
/// an error: the answer is simply not wanted any more.
fn answer(text: &str) -> anyhow::Result<()> {
    match writeln!(std::io::stdout().lock(), "{text}") {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        written => written.context("cannot write to stdout"),
    }
}

/// The next whole second, once it has come. A token's `iat` is whole seconds and a revocation
/// (`tokens_valid_after = now()`) is not: a token stamped with the current second would be
/// older than a revocation made earlier in the same second, so `token issue` waits for the
/// next one and never returns a token that a revocation made before it refuses.
async fn next_whole_second() -> DateTime<Utc> {
    let now = Utc::now();
    let next = now.duration_trunc(TimeDelta::seconds(1)).unwrap_or(now) + TimeDelta::seconds(1);
    tokio::time::sleep((next - now).to_std().unwrap_or_default()).await;
    next
}

async fn inspect(settings: &Settings, token: &str) -> anyhow::Result<()> {
    let keys = KeyRing::from_settings(&settings.auth)?;
    let verified = keys.verify(token, Utc::now()).map_err(|rejection| {
        ActionNeeded(format!(
            "rejected by the signature and claims check: {rejection}"
        ))
    })?;
    println!("partner: {}", verified.partner_id);
    println!("issued at: {}", verified.issued_at.to_rfc3339());
    if settings.database.url.is_none() {
        println!("verdict: signature and claims valid (partner not checked: no DATABASE_URL)");
        return Ok(());
    }
    let database = store::Database::new(connect(settings).await?, None, &settings.database);
    match store::partners::why_refused(&database, verified.partner_id, Some(verified.issued_at))
        .await?
    {
        None => {
            println!("verdict: accepted");
            Ok(())
        }
        Some(refused) => {
            Err(ActionNeeded(format!("rejected by the partner check: {refused}")).into())
        }
    }
}
