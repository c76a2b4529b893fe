//! The binary's errors as a person meets them: one line that names the fix, for each error a newcomer
//! hits first (unreachable emulator, a project never set up, a busy HTTP port), flags that contradict
//! each other refused, and a closed stdout (`| head`) ending the command quietly.

mod common;

use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use common::TestEnv;

/// The binary without the emulators of the test's environment: each test sets the hosts it means.
fn binary() -> Command {
    let mut command = common::binary();
    command.env("PROPS_LOG_FORMAT", "text").env_remove("PUBSUB_EMULATOR_HOST").env_remove("FIRESTORE_EMULATOR_HOST");
    command
}

/// The binary on `env`'s project and emulators.
fn binary_on(env: &TestEnv) -> Command {
    let mut command = env.binary();
    command.env("PROPS_LOG_FORMAT", "text");
    command
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).trim().to_string()
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

/// The one error line, checked for what every error must have.
fn error_line(output: &Output) -> String {
    let text = stderr(output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert_eq!(text.lines().count(), 1, "one line: {text}");
    assert!(text.starts_with("error: "), "{text}");
    text
}

#[test]
fn an_unreachable_firestore_emulator_fails_at_once_naming_host_and_variable() {
    let host = format!("127.0.0.1:{}", closed_port());
    let started = Instant::now();
    // The RPC timeout is long: only the TCP probe can answer this quickly.
    let output = binary()
        .args(["status", "--rpc-timeout-secs", "60"])
        .env("FIRESTORE_EMULATOR_HOST", &host)
        .output()
        .expect("run");
    let elapsed = started.elapsed();
    let line = error_line(&output);
    println!("refused Firestore emulator reported after {elapsed:?}: {line}");
    assert!(line.contains(&format!("cannot reach the Firestore emulator at {host}")), "{line}");
    assert!(line.contains("TCP connect") && line.contains("FIRESTORE_EMULATOR_HOST"), "{line}");
    assert!(line.len() < 300, "short: {line}");
}

#[test]
fn an_unreachable_pubsub_emulator_fails_at_once_naming_host_and_variable() {
    let host = format!("127.0.0.1:{}", closed_port());
    let output =
        binary().args(["setup", "--rpc-timeout-secs", "60"]).env("PUBSUB_EMULATOR_HOST", &host).output().expect("run");
    let line = error_line(&output);
    assert!(line.contains(&format!("cannot reach the Pub/Sub emulator at {host}")), "{line}");
    assert!(line.contains("PUBSUB_EMULATOR_HOST") && line.contains("--pubsub-emulator-host"), "{line}");
}

#[tokio::test]
async fn a_trigger_in_a_project_never_set_up_says_to_run_setup() {
    let env = TestEnv::new("nosetup").await;
    let output = binary_on(&env).args(["trigger", "--game-date", "2025-06-22"]).output().expect("run");
    let line = error_line(&output);
    assert!(line.contains("run `props-pipeline setup`"), "{line}");
    assert_eq!(line.matches("not found").count(), 1, "the server's message once: {line}");
}

#[tokio::test]
async fn a_busy_http_port_says_how_to_choose_another() {
    let env = TestEnv::new("busyport").await;
    let busy = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = busy.local_addr().expect("addr").to_string();
    let output = binary_on(&env).args(["run", "worker", "--http-addr", &addr]).output().expect("run");
    drop(busy);
    let line = error_line(&output);
    assert!(line.contains(&addr) && line.contains("in use"), "{line}");
    assert!(line.contains("--http-addr") && line.contains("PROPS_HTTP_ADDR"), "{line}");
}

#[test]
fn contradictory_or_ignored_flags_are_refused() {
    for (args, why) in [
        (&["status", "--timeout-secs", "5"][..], "--watch"),
        (&["status", "2025-06-22-m1", "--game-date", "2025-06-22"][..], "--game-date"),
        (&["missing", "2025-06-22-m1", "--game-date", "2025-06-22"][..], "--game-date"),
        (&["trigger", "--game-date", "2025-06-22", "--wait-timeout-secs", "5"][..], "--wait"),
        // Offline: no Google Cloud flags at all.
        (&["backtest", "--from", "2023-04-15", "--to", "2023-04-16", "--project", "x"][..], "--project"),
        // Flags come after the subcommand.
        (&["--project", "props-local", "status"][..], "--project"),
    ] {
        let output = binary().args(args).output().expect("run");
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {text}");
        assert!(text.contains(why), "{args:?}: {text}");
    }
}

#[test]
fn a_usage_error_does_not_list_flags_the_environment_set() {
    let output = binary()
        .args(["status", "--timeout-secs", "5"])
        .env("FIRESTORE_EMULATOR_HOST", "127.0.0.1:1")
        .env("GOOGLE_CLOUD_PROJECT", "props-local")
        .output()
        .expect("run");
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    let usage = text.lines().find(|l| l.starts_with("Usage: ")).unwrap_or_default();
    assert_eq!(usage, "Usage: props-pipeline status [OPTIONS] [BATCH_ID]", "{text}");
}

#[test]
fn each_command_lists_only_the_flags_it_uses() {
    let help = |command: &str| {
        let output = binary().args([command, "--help"]).output().expect("run");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let backtest = help("backtest");
    assert!(!backtest.contains("--project") && !backtest.contains("EMULATOR_HOST"), "{backtest}");
    let status = help("status");
    assert!(status.contains("--firestore-emulator-host") && !status.contains("--pubsub-emulator-host"), "{status}");
    assert!(!status.contains("--trigger-topic"), "{status}");
    let trigger = help("trigger");
    assert!(trigger.contains("--trigger-topic") && !trigger.contains("--request-topic"), "{trigger}");
}

#[tokio::test]
async fn a_closed_stdout_ends_the_command_quietly() {
    let env = TestEnv::new("pipe").await;
    let mut child =
        binary_on(&env).args(["status"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("run");
    // Close the reading end before the command prints, as `| head` does once it has its lines.
    drop(child.stdout.take());
    let output = child.wait_with_output().expect("wait");
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(!text.contains("panicked"), "{text}");
}
