//! Structured logs: JSON lines by default (SPEC §5). `RUST_LOG` overrides `log.level`.

use std::io::IsTerminal;
use std::num::NonZeroU32;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::{DefaultDirectRateLimiter, Quota};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::dynamic_filter_fn;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;

use crate::config::{LogFormat, LogSettings};

/// Logs on stdout, for `serve`.
pub fn init_stdout(settings: &LogSettings) {
    init(settings, std::io::stdout, std::io::stdout().is_terminal());
}

/// Logs on stderr, for the commands whose stdout is their answer (`token issue`).
pub fn init_stderr(settings: &LogSettings) {
    init(settings, std::io::stderr, std::io::stderr().is_terminal());
}

/// Installs the global subscriber writing to `writer`, with colours only on a terminal, and
/// routes panics into it.
fn init<W>(settings: &LogSettings, writer: W, terminal: bool)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    // Postgres's notices ("relation _sqlx_migrations already exists, skipping" on every
    // migrate) are noise unless they warn.
    let quiet_notices = |level: &str| format!("{level},sqlx::postgres::notice=warn");
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(quiet_notices(&settings.level)))
        .unwrap_or_else(|_| EnvFilter::new(quiet_notices("info")));
    let lines = tracing_subscriber::fmt::layer()
        .with_ansi(terminal)
        .with_writer(writer);
    let lines = match settings.format {
        LogFormat::Json => lines
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
        LogFormat::Pretty => lines.boxed(),
    };
    // Each layer filters for itself: the log keeps its level while the trace exporter (when a
    // collector is configured) also sees the spans below it (the cache decision, each
    // statement), which the log never shows.
    let installed = tracing_subscriber::registry()
        // Asked per event, not once per call site: the budget changes from one to the next.
        .with(
            lines
                .with_filter(dynamic_filter_fn(|event, _| within_budget(event)))
                .with_filter(filter),
        )
        .with(crate::traces::layer())
        .try_init();
    // A subscriber already installed (a second init in one process) keeps logging; fine.
    drop(installed);
    log_panics();
}

/// Whether an event may be written: the HTTP layer's own lines about requests it could not
/// read (a malformed head: one per request a stranger sends) are counted and written within
/// the strangers' budget; every other event is.
fn within_budget(event: &tracing::Metadata<'_>) -> bool {
    if !event.target().starts_with("actix_http::h1") || *event.level() > tracing::Level::WARN {
        return true;
    }
    metrics::counter!("agent_api_http_unreadable_requests_total").increment(1);
    strangers().allow()
}

/// A panic is logged as one error line like any other, not as plain text beside the log.
fn log_panics() {
    std::panic::set_hook(Box::new(|panic| {
        let location = panic
            .location()
            .map(ToString::to_string)
            .unwrap_or_default();
        let message = panic
            .payload_as_str()
            .unwrap_or("a panic without a message");
        tracing::error!(panic = %message, %location, "panicked");
    }));
}

/// Log lines others can have written by the thousand: at most a few a second are written, and
/// how many were left out is said every few seconds instead. Each kind has a budget of its own,
/// so a flood of one never hides the other.
pub struct Throttle {
    lines: DefaultDirectRateLimiter,
    left_out: AtomicU64,
    /// What the left-out lines were, for the line that counts them.
    what: &'static str,
}

impl Throttle {
    /// Whether this line may be written; counts it as left out if not.
    pub fn allow(&self) -> bool {
        let allowed = self.lines.check().is_ok();
        if !allowed {
            self.left_out.fetch_add(1, Ordering::Relaxed);
        }
        allowed
    }

    /// Says how many lines were left out since it last said so.
    pub fn report_left_out(&self) {
        let left_out = self.left_out.swap(0, Ordering::Relaxed);
        if left_out > 0 {
            tracing::info!(left_out, "{} not logged one by one", self.what);
        }
    }

    /// 10 lines a second, 20 at once.
    fn new(what: &'static str) -> Self {
        Self {
            lines: DefaultDirectRateLimiter::direct(
                Quota::per_second(NonZeroU32::new(10).expect("not zero"))
                    .allow_burst(NonZeroU32::new(20).expect("not zero")),
            ),
            left_out: AtomicU64::new(0),
            what,
        }
    }
}

/// Strangers' requests: refused, to unknown paths, or unreadable.
pub fn strangers() -> &'static Throttle {
    static STRANGERS: OnceLock<Throttle> = OnceLock::new();
    STRANGERS.get_or_init(|| Throttle::new("strangers' requests"))
}

/// Notifications on the change feed's channel that the schema did not send.
pub fn forged_announcements() -> &'static Throttle {
    static FORGED: OnceLock<Throttle> = OnceLock::new();
    FORGED.get_or_init(|| Throttle::new("ignored notifications on the change feed's channel"))
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_panic_is_one_json_log_line() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_writer(move || writer.clone())
            .finish();
        let previous = std::panic::take_hook();
        log_panics();
        tracing::subscriber::with_default(subscriber, || {
            let _ = std::panic::catch_unwind(|| panic!("a bug, somewhere"));
        });
        std::panic::set_hook(previous);
        let written = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        assert_eq!(written.lines().count(), 1, "{written}");
        let line: serde_json::Value = serde_json::from_str(&written).unwrap();
        assert_eq!(line["level"], "ERROR");
        assert_eq!(line["fields"]["panic"], "a bug, somewhere");
    }
}
