//! Structured logs: JSON lines by default (SPEC §5). `RUST_LOG` overrides `log.level`.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::{LogFormat, LogSettings};

/// Installs the global subscriber writing to `writer`: stdout for `serve`, stderr for the
/// commands whose stdout is their answer (`token issue`).
pub fn init<W>(settings: &LogSettings, writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    // Postgres's notices ("relation _sqlx_migrations already exists, skipping" on every
    // migrate) are noise unless they warn.
    let quiet_notices = |level: &str| format!("{level},sqlx::postgres::notice=warn");
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(quiet_notices(&settings.level)))
        .unwrap_or_else(|_| EnvFilter::new(quiet_notices("info")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let installed = match settings.format {
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
    // A subscriber already installed (a second init in one process) keeps logging; fine.
    drop(installed);
}
