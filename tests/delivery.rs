//! Delivery confirmation and coverage: `props-pipeline trigger --wait` follows the batch created from
//! the message it published and exits by how it ended; a batch that completes below the coverage
//! threshold raises ALERT_LOW_COVERAGE, and `status` shows its coverage. `status --watch` exits by the
//! same scheme and prints JSON with `--json`.

mod common;

use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::harness::{DATE, Harness, date, items};
use props_pipeline::batch::documents::batch_id_for;
use props_pipeline::batch::engine::ALERT_LOW_COVERAGE;
use props_pipeline::batch::settings::EngineSettings;
use props_pipeline::batch::state::BatchState;
use props_pipeline::messages::TriggerMode;

async fn binary(harness: &Harness, args: &[&str]) -> Output {
    tokio::process::Command::from(harness.env.binary()).args(args).output().await.expect("run props-pipeline")
}

async fn trigger_wait(harness: &Harness, timeout_secs: &str) -> (Output, String) {
    let args = ["trigger", "--game-date", DATE, "--reason", "wait test", "--wait", "--wait-timeout-secs", timeout_secs];
    let output = binary(harness, &args).await;
    let message_id = text(&output.stdout).lines().next().unwrap_or_default().trim().to_string();
    (output, message_id)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trigger_wait_follows_its_own_batch_to_complete_and_exits_zero() {
    let mut harness = Harness::new("wait-ok").await;
    harness.domain.set_items(date(), items(5));
    let engine = harness.engine(EngineSettings::default());
    harness.run_all_roles(&engine);
    let (output, message_id) = trigger_wait(&harness, "60").await;
    let batch_id = batch_id_for(DATE, &message_id);
    let header = harness.store.header(&batch_id).await.unwrap();
    let watched = binary(&harness, &["status", &batch_id, "--watch", "--json", "--timeout-secs", "10"]).await;
    harness.stop().await;

    // `status --watch --json` prints the final state as the JSON document, not the summary line.
    assert_eq!(watched.status.code(), Some(0), "{}", text(&watched.stderr));
    let report: serde_json::Value = serde_json::from_slice(&watched.stdout).expect("JSON from --watch --json");
    assert_eq!(report["batches"][0]["state"], "COMPLETE", "{report}");
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.contains(&format!("{batch_id} COMPLETE: 5 done, 0 failed of 5")), "{stdout}");
    assert!(stdout.contains("coverage 100.0%"), "{stdout}");
    assert_eq!(header.map(|h| h.state), Some(BatchState::Complete));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trigger_wait_exits_with_failed_when_its_batch_fails() {
    let mut harness = Harness::new("wait-failed").await;
    harness.domain.set_items(date(), items(3));
    let engine = harness.engine(EngineSettings::default());
    harness.run_coordinator(&engine);
    harness.run_worker(&["player0000", "player0001", "player0002"]);
    let (output, _) = trigger_wait(&harness, "60").await;
    harness.stop().await;

    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("FAILED: 3 of 3 items failed"), "{stderr}");
    assert!(stderr.contains("`props-pipeline missing"), "names the command that lists the failed items: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trigger_wait_times_out_when_nothing_runs_and_reports_a_no_op_at_once() {
    let mut harness = Harness::new("wait-noop").await;
    harness.domain.set_items(date(), items(3));
    let engine = harness.engine(EngineSettings::default());
    // A coordinator but no worker: the first batch starts and never finishes.
    harness.run_coordinator(&engine);
    let (first, first_message_id) = trigger_wait(&harness, "8").await;
    assert_eq!(first.status.code(), Some(5), "{}", text(&first.stderr));
    let first_id = batch_id_for(DATE, &first_message_id);
    assert!(
        text(&first.stderr).contains(&format!("batch {first_id} still RUNNING after 8s")),
        "{}",
        text(&first.stderr)
    );
    assert_eq!(harness.store.header(&first_id).await.unwrap().map(|h| h.state), Some(BatchState::Running));

    let started = Instant::now();
    let (second, _) = trigger_wait(&harness, "120").await;
    let waited = started.elapsed();
    harness.stop().await;
    assert_eq!(second.status.code(), Some(6), "{}", text(&second.stderr));
    let stderr = text(&second.stderr);
    assert!(stderr.contains("no-op") && stderr.contains(&first_id), "{stderr}");
    assert!(waited < Duration::from_secs(60), "a no-op is reported at once, not after the timeout: {waited:?}");
}

/// Collects every log line of this test binary.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_completing_below_the_coverage_threshold_raises_an_alert_and_status_shows_coverage() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber of this test binary");

    let mut harness = Harness::new("coverage").await;
    harness.domain.set_items(date(), items(10));
    // Two failures of ten are tolerated (the batch completes) but are below 90% coverage.
    let settings =
        EngineSettings { tolerated_failed_fraction: 0.5, coverage_alert_threshold: 0.9, ..Default::default() };
    let engine = harness.engine(settings);
    harness.run_coordinator(&engine);
    harness.run_worker(&["player0003", "player0007"]);
    let batch_id = harness.publish_trigger(TriggerMode::Start).await;
    let header = harness.wait_for_final(&batch_id, Duration::from_secs(60)).await;
    assert_eq!((header.state, header.coverage), (BatchState::Complete, Some(0.8)));

    let logs = text(&captured.0.lock().unwrap());
    let alert = logs.lines().find(|l| l.contains(ALERT_LOW_COVERAGE) && l.contains(&batch_id));
    assert!(alert.is_some_and(|l| l.contains("ERROR") && l.contains("80.0% coverage")), "{logs}");

    let status = binary(&harness, &["status", "--json", &batch_id]).await;
    let report: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status --json");
    assert_eq!(report["batches"][0]["coverage"], 0.8);
    let table = text(&binary(&harness, &["status"]).await.stdout);
    assert!(table.contains("COVERAGE") && table.contains("80.0%"), "{table}");
    harness.stop().await;
}
