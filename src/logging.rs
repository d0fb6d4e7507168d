use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, clap::Args)]
pub struct LoggingSettings {
    /// What to log, as a tracing filter (e.g. `info`, `frameworks_events=debug`).
    #[arg(
        long = "log",
        env = "FRAMEWORKS_LOG",
        default_value = "info,sqlx=warn",
        global = true,
        value_parser = parse_filter
    )]
    pub filter: String,
}

fn parse_filter(value: &str) -> Result<String, String> {
    EnvFilter::try_new(value)
        .map(|_| value.to_owned())
        .map_err(|e| e.to_string())
}

/// Logs go to stderr so that stdout stays the command's own output.
pub fn init(settings: &LoggingSettings) {
    let filter = EnvFilter::try_new(&settings.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
