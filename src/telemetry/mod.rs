//! Logs (`tracing` to stdout, pretty or one JSON object per line) and Prometheus [`metrics`].

pub mod metrics;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

use crate::config::LogFormat;

/// Installs the global subscriber. `RUST_LOG` overrides the default levels.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_span_events(FmtSpan::NONE);
    match format {
        // Spans (and so the request id) are part of every line in both formats.
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(true).init(),
        LogFormat::Pretty => builder.init(),
    }
}
