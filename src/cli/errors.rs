//! Errors as a person meets them: one line that says what failed and what to do about it.
//!
//! - An emulator host is probed with one TCP connect before any client uses it, so a stopped emulator
//!   fails in under 2 s naming the host and the variable to check, instead of after the RPC timeout.
//! - A chain whose outer messages already quote their sources (thiserror's `{source}` plus `#[source]`)
//!   is printed once, not three times.
//! - A Pub/Sub `NOT_FOUND` (topic or subscription) says to run `setup`; a busy HTTP port says how to
//!   choose another.
//! - A usage error shows the subcommand's usage line, not one listing every flag set by the environment.

use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::time::Duration;

use clap::{CommandFactory, Parser};
use google_cloud_gax::error::rpc::{Code, Status};
use props_pipeline::config::GcpSettings;
use props_pipeline::gcp::errors::GcpError;
use props_pipeline::ops::http::HttpError;

use super::Cli;

/// One TCP connect: an emulator on this machine answers in milliseconds, and the whole check of both
/// emulators stays under 2 s.
const PROBE_TIMEOUT: Duration = Duration::from_millis(900);

/// An emulator that does not accept a TCP connection.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot reach the {service} emulator at {host} ({tried}): start it (`make emulators`, then \
     `set -a; . .emulators/env; set +a`) or fix {variable} / {flag}"
)]
pub struct EmulatorUnreachable {
    service: &'static str,
    host: String,
    tried: String,
    variable: &'static str,
    flag: &'static str,
}

/// Fails fast when a configured emulator host does not answer.
pub async fn probe_emulators(gcp: &GcpSettings) -> Result<(), EmulatorUnreachable> {
    let emulators = [
        ("Pub/Sub", &gcp.pubsub_emulator_host, "PUBSUB_EMULATOR_HOST", "--pubsub-emulator-host"),
        ("Firestore", &gcp.firestore_emulator_host, "FIRESTORE_EMULATOR_HOST", "--firestore-emulator-host"),
    ];
    for (service, host, variable, flag) in emulators {
        let Some(host) = host else { continue };
        let tried = match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(host.as_str())).await {
            Ok(Ok(_)) => continue,
            Ok(Err(error)) => format!("TCP connect: {error}"),
            Err(_) => format!("no answer to a TCP connect within {} ms", PROBE_TIMEOUT.as_millis()),
        };
        return Err(EmulatorUnreachable { service, host: host.clone(), tried, variable, flag });
    }
    Ok(())
}

/// Parses the command line. On a usage error clap's usage line lists every argument that has a value,
/// environment variables included, so with the emulator variables set they would look required; the
/// subcommand's own usage line replaces it.
pub fn parse_command_line() -> Cli {
    Cli::try_parse().unwrap_or_else(|error| {
        let Some(usage) = subcommand_usage().filter(|_| error.use_stderr()) else { error.exit() };
        let text = error.render().to_string();
        for line in text.lines() {
            let line = if line.starts_with("Usage: ") { usage.as_str() } else { line };
            let _ = writeln!(io::stderr(), "{line}");
        }
        std::process::exit(error.exit_code())
    })
}

fn subcommand_usage() -> Option<String> {
    let name = std::env::args().skip(1).find(|arg| !arg.starts_with('-'))?;
    let mut command = Cli::command();
    command.build();
    Some(command.find_subcommand_mut(&name)?.render_usage().to_string())
}

/// `run`'s HTTP server could not start; a busy port says how to choose another.
pub fn http_error(error: HttpError, addr: SocketAddr) -> anyhow::Error {
    match &error {
        HttpError::Bind { source, .. } if source.kind() == io::ErrorKind::AddrInUse => anyhow::anyhow!(
            "cannot serve /healthz, /readyz and /metrics on {addr}: the port is in use (another `run` on this \
             host?); choose another with --http-addr or PROPS_HTTP_ADDR (port 0 picks a free one)"
        ),
        _ => error.into(),
    }
}

/// The error as one line: for a known failure what was done, the server's words and the fix; otherwise
/// each cause once.
pub fn one_line(error: &anyhow::Error) -> String {
    if let Some(line) = with_fix(error) {
        return line;
    }
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string().split_whitespace().collect::<Vec<_>>().join(" ");
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// For an error with a known fix: what the command was doing, the server's own words, and the fix.
fn with_fix(error: &anyhow::Error) -> Option<String> {
    let status = error.chain().find_map(pubsub_status).filter(|status| status.code == Code::NotFound)?;
    Some(format!(
        "{error}: {}; the topic or subscription does not exist in this project: run `props-pipeline setup` with \
         the same --project",
        status.message
    ))
}

/// The status of a Pub/Sub failure (the crate's error, bare or inside a publish error or [`GcpError`]).
fn pubsub_status(cause: &(dyn std::error::Error + 'static)) -> Option<Status> {
    use google_cloud_pubsub::error::PublishError;
    let rpc: &google_cloud_pubsub::Error =
        match (cause.downcast_ref::<GcpError>(), cause.downcast_ref::<PublishError>()) {
            (Some(GcpError::Pubsub { source, .. }), _) => source,
            (Some(GcpError::Publish { source: PublishError::Rpc(inner), .. }), _) => inner,
            (_, Some(PublishError::Rpc(inner))) => inner,
            _ => cause.downcast_ref::<google_cloud_pubsub::Error>()?,
        };
    rpc.status().cloned()
}

/// Whether the error is a write to a closed stdout (`props-pipeline status | head -1`): not a failure
/// of the command, so the process ends quietly.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| cause.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("publishing failed: {source}")]
    struct Quoting {
        source: io::Error,
    }

    #[test]
    fn a_cause_the_outer_message_already_quotes_is_printed_once() {
        let inner = io::Error::new(io::ErrorKind::ConnectionRefused, "tcp connect error:\n  refused");
        let error = anyhow::Error::new(Quoting { source: inner }).context("could not publish the trigger");
        assert_eq!(one_line(&error), "could not publish the trigger: publishing failed: tcp connect error: refused");
    }

    #[test]
    fn a_cause_not_quoted_is_kept() {
        let error = anyhow::anyhow!("root cause").context("reading batches");
        assert_eq!(one_line(&error), "reading batches: root cause");
    }

    #[test]
    fn broken_pipe_is_recognised_through_context() {
        let error = anyhow::Error::new(io::Error::from(io::ErrorKind::BrokenPipe)).context("printing the table");
        assert!(is_broken_pipe(&error));
        assert!(!is_broken_pipe(&anyhow::anyhow!("other")));
    }

    #[tokio::test]
    async fn a_closed_port_fails_the_probe_naming_host_and_variable() {
        // Bind then drop: the port is free and nothing listens on it.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let gcp = GcpSettings::new("props-test", None, Some(format!("127.0.0.1:{port}")));
        let message = probe_emulators(&gcp).await.unwrap_err().to_string();
        assert!(message.contains(&format!("Firestore emulator at 127.0.0.1:{port}")), "{message}");
        assert!(message.contains("FIRESTORE_EMULATOR_HOST"), "{message}");
        assert!(!message.contains('\n'), "{message}");
    }
}
