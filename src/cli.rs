//! The `agent-api` command line (SPEC §5): serve, migrate, seed-demo, token issue/inspect.

use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use clap::{Parser, Subcommand};
use sqlx::PgPool;
use uuid::Uuid;

use crate::clock::system_clock;
use crate::config::Settings;
use crate::startup::Application;
use crate::tokens::KeyRing;
use crate::{store, telemetry, tls};

#[derive(Debug, Parser)]
#[command(
    name = "agent-api",
    version,
    about = "Partner API of the cloud call-centre platform"
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
    /// Serve the API until SIGTERM or SIGINT.
    Serve,
    /// Apply pending database migrations; harmless when there are none.
    Migrate,
    /// Insert or restore the demo tenant, partner, customer and lines (idempotent).
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
    Issue {
        #[arg(long)]
        partner: Uuid,
        /// Lifetime such as `1h`, `30d`; defaults to auth.default_ttl.
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Option<Duration>,
        /// The key to sign with; defaults to auth.signing_kid (or the HS256 secret).
        #[arg(long)]
        kid: Option<String>,
    },
    /// Decode a token and say whether this server would accept it, and why not.
    Inspect { token: String },
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
            let pool = connect(&settings).await?;
            store::migrate(&pool).await?;
            tracing::info!("migrations applied");
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
    let address = (settings.server.host.as_str(), settings.server.port);
    let listener = TcpListener::bind(address).with_context(|| {
        format!(
            "cannot listen on {}:{} (server.host/server.port)",
            settings.server.host, settings.server.port
        )
    })?;
    let application = Application::build(&settings, listener, pool.clone(), system_clock()).await?;
    tracing::info!(
        port = application.port(),
        ops_port = application.ops_port(),
        tls = settings.tls.cert_path.is_some(),
        "agent-api serving"
    );
    application.run_until_stopped().await?;
    pool.close().await;
    tracing::info!("agent-api stopped");
    Ok(())
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

/// A pool once the database answers, waiting with backoff for up to
/// `database.startup_wait_seconds` so a database still starting is not a crash loop.
async fn connect(settings: &Settings) -> anyhow::Result<PgPool> {
    let pool = store::pool(settings.database_url()?, &settings.database)
        .context("DATABASE_URL is not a usable Postgres URL")?;
    let deadline = Instant::now() + Duration::from_secs(settings.database.startup_wait_seconds);
    let mut backoff = Duration::from_millis(250);
    loop {
        match store::ping(&pool).await {
            Ok(()) => return Ok(pool),
            Err(error) if Instant::now() + backoff < deadline => {
                tracing::warn!(error = %error, retry_in_ms = backoff.as_millis() as u64, "database not reachable yet");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(error) => {
                return Err(error).context(format!(
                    "database not reachable within {} s (database.startup_wait_seconds)",
                    settings.database.startup_wait_seconds
                ));
            }
        }
    }
}

async fn inspect(settings: &Settings, token: &str) -> anyhow::Result<()> {
    let keys = KeyRing::from_settings(&settings.auth)?;
    let verdict = match keys.verify(token, Utc::now()) {
        Err(rejection) => Err(rejection.to_string()),
        Ok(verified) => {
            println!("partner: {}", verified.partner_id);
            println!("issued at: {}", verified.issued_at.to_rfc3339());
            match settings.database_url() {
                Err(_) => Ok("signature and claims valid (partner not checked: no DATABASE_URL)"),
                Ok(_) => {
                    let pool = connect(settings).await?;
                    if store::partners::standing(&pool, verified.partner_id)
                        .await?
                        .accepts(&verified)
                    {
                        Ok("accepted")
                    } else {
                        Err(
                            "partner unknown, deleted, not a partner, or its tokens were revoked"
                                .into(),
                        )
                    }
                }
            }
        }
    };
    match verdict {
        Ok(verdict) => {
            println!("verdict: {verdict}");
            Ok(())
        }
        Err(reason) => anyhow::bail!("rejected: {reason}"),
    }
}
