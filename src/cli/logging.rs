//! Log output: human-readable text on a terminal, Cloud Logging JSON lines elsewhere (containers).

use std::io::IsTerminal;

use props_pipeline::ops::log_format::CloudLogging;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::JsonFields;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    /// The chosen format, or by default text when stderr is a terminal (a person reads it) and JSON
    /// otherwise (a container's output goes to a log collector).
    pub fn resolve(chosen: Option<LogFormat>, stderr_is_terminal: bool) -> LogFormat {
        chosen.unwrap_or(if stderr_is_terminal { LogFormat::Text } else { LogFormat::Json })
    }
}

/// Logs go to stderr so that stdout carries only a command's result (a message id, a report).
/// `RUST_LOG` overrides the default `info` level.
pub fn init(chosen: Option<LogFormat>) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,firestore=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match LogFormat::resolve(chosen, std::io::stderr().is_terminal()) {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.fmt_fields(JsonFields::new()).event_format(CloudLogging).init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_by_default_off_a_terminal_and_a_choice_always_wins() {
        assert_eq!(LogFormat::resolve(None, true), LogFormat::Text);
        assert_eq!(LogFormat::resolve(None, false), LogFormat::Json);
        assert_eq!(LogFormat::resolve(Some(LogFormat::Text), false), LogFormat::Text);
        assert_eq!(LogFormat::resolve(Some(LogFormat::Json), true), LogFormat::Json);
    }
}
