//! SIGTERM to a real consumer process in the middle of a stream: in-flight handlers finish, the rest
//! is released, and nothing is lost.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{TestEnv, fast_retry_policy};

/// `cargo test` builds the examples next to the test binaries' `deps` folder.
fn example_binary(name: &str) -> PathBuf {
    let test_binary = std::env::current_exe().expect("test binary path");
    let profile_dir = test_binary.parent().and_then(|deps| deps.parent()).expect("target/<profile>/deps");
    let path = profile_dir.join("examples").join(name);
    assert!(path.exists(), "{} not built; build it first: `cargo build --examples` (make test does)", path.display());
    path
}

/// Runs `slow_consumer` on `subscription`, sends it SIGTERM once `started`/`finished` lines satisfy
/// `ready_to_stop`, and returns every line it printed after it exited 0.
fn run_then_sigterm(
    env: &TestEnv,
    subscription: &str,
    args: &[&str],
    ready_to_stop: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let mut child = Command::new(example_binary("slow_consumer"))
        .args(["--subscription", subscription, "--concurrency", "4"])
        .args(args)
        .envs(env.binary_env())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start slow_consumer");
    let (line_tx, line_rx) = mpsc::channel::<String>();
    let stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = line_tx.send(line);
        }
    });
    let mut lines = Vec::new();
    while !ready_to_stop(&lines) {
        lines.push(line_rx.recv_timeout(Duration::from_secs(60)).expect("the consumer makes progress"));
    }
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("run kill");
    assert!(status.success());
    let exit = child.wait().expect("wait for the consumer");
    reader.join().expect("reader thread");
    lines.extend(line_rx.try_iter());
    assert!(exit.success(), "graceful shutdown exits 0, got {exit:?}; output: {lines:?}");
    lines
}

fn count(lines: &[String], prefix: &str) -> usize {
    lines.iter().filter(|l| l.starts_with(prefix)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_stream_finishes_in_flight_work_and_acks_only_what_it_finished() {
    const COUNT: usize = 40;
    let env = TestEnv::new("sigterm").await;
    env.setup(&fast_retry_policy(5)).await;
    let channel = env.topology.channels()[1].clone();
    let all: HashSet<String> = (0..COUNT).map(|i| format!("m{i}")).collect();
    for data in &all {
        env.publish(&channel.topic, data.clone(), &[]).await;
    }

    // Let a few messages finish and others be in flight, then ask for a graceful stop.
    let lines = run_then_sigterm(
        &env,
        &channel.subscription,
        &["--handle-ms", "1500", "--shutdown-grace-secs", "15"],
        |lines| count(lines, "finished") >= 6,
    );

    let started: HashSet<_> = lines.iter().filter_map(|l| l.strip_prefix("started ")).map(String::from).collect();
    let finished: HashSet<_> = lines.iter().filter_map(|l| l.strip_prefix("finished ")).map(String::from).collect();
    assert_eq!(started, finished, "every handler that started finished within the grace period");
    assert!(finished.len() < COUNT, "the stop came mid-stream");
    // Nothing lost on the consumer's side: it acked exactly the messages it finished handling, so
    // every other message is still unacknowledged in the subscription. (That the broker then
    // redelivers them is Pub/Sub's part; the emulator was seen to withhold them for minutes after a
    // consumer process stopped, see docs/ARCHITECTURE.md, so it is not asserted here.)
    let summary = format!("stopped acked={} abandoned=0", finished.len());
    assert_eq!(lines.last(), Some(&summary), "{lines:?}");
}

/// Handlers slower than the grace period: the process stops on time, abandons them (nacks) and exits
/// 0. Whether the emulator then redelivers them promptly is not asserted: after the client resets a
/// stream, the emulator (0.8.20) was seen to keep those messages for minutes (docs/ARCHITECTURE.md);
/// real Pub/Sub redelivers a nacked message at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_on_time_when_handlers_outlive_the_grace_period() {
    let env = TestEnv::new("sigterm-grace").await;
    env.setup(&fast_retry_policy(5)).await;
    let channel = env.topology.channels()[1].clone();
    for i in 0..3 {
        env.publish(&channel.topic, format!("slow{i}"), &[]).await;
    }
    // Handlers take 5 minutes; the grace period is 1 s.
    let started = std::time::Instant::now();
    let lines = run_then_sigterm(
        &env,
        &channel.subscription,
        &["--handle-ms", "300000", "--shutdown-grace-secs", "1"],
        |lines| count(lines, "started") >= 3,
    );
    assert!(started.elapsed() < Duration::from_secs(60), "stopped after {:?}", started.elapsed());
    assert_eq!(count(&lines, "finished"), 0, "{lines:?}");
    assert!(lines.last().is_some_and(|l| l == "stopped acked=0 abandoned=3"), "{lines:?}");
}
