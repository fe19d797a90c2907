//! Logging setup shared by the binaries: `tracing` with an env filter (`RUST_LOG`, default
//! `info`) and text or JSON output (`LOG_FORMAT`).
//!
//! Libraries that log through the `log` crate — teloxide among them: its `getUpdates` errors
//! (401 for a revoked token, 409 when another process polls or a webhook is set) and its
//! polling retries — are bridged into the same subscriber, filtered by the same `RUST_LOG`
//! (their targets are their module paths, e.g. `teloxide::error_handlers`).

use tracing_subscriber::EnvFilter;

/// The environment variable holding the log filter (`RUST_LOG`, e.g. `info` or
/// `info,neurocards_core::pipeline=debug`); `info` when unset or malformed.
pub const LOG_FILTER_VAR: &str = "RUST_LOG";

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines (development).
    #[default]
    Text,
    /// One JSON object per line, with span fields (`job_id`, `order_id`, `user_id`) attached.
    Json,
}

impl LogFormat {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" | "" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }
}

/// Installs the global subscriber and the `log` bridge. Safe to call more than once (later
/// calls do nothing), so tests and embedding hosts can call it freely; a host that already set
/// a `log` logger or a `tracing` subscriber keeps its own.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_env(LOG_FILTER_VAR).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(true);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(true).try_init(),
    };
}
