//! Process logs (not the audit log): `tracing` events to stderr as text or
//! one JSON object per line. The level filter comes from `SQLGUARD_LOG`, else
//! `RUST_LOG`, else `info`. Events never carry SQL text: the audit log does.

use tracing_subscriber::EnvFilter;

/// `--log-format` / `log.format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `message`
    /// and the event's fields at the top level), for log shippers.
    Json,
}

impl LogFormat {
    /// Parses a `log.format` value from proxy.toml.
    pub fn parse(value: &str) -> Option<LogFormat> {
        match value {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }
}

fn filter() -> EnvFilter {
    for var in ["SQLGUARD_LOG", "RUST_LOG"] {
        if std::env::var_os(var).is_some() {
            if let Ok(filter) = EnvFilter::try_from_env(var) {
                return filter;
            }
            eprintln!("warning: {var} is not a valid log filter; using \"info\"");
            break;
        }
    }
    EnvFilter::new("info")
}

/// Installs the process-wide subscriber (once; later calls do nothing).
pub fn init(format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
}
