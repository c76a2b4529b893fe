//! Deterministic network-fault regressions, one scripted fault each (the gRPC fault injector of
//! `crates/grpc-faults` between one role and the Firestore emulator):
//!
//! - the seal write of a batch fails (answered UNAVAILABLE or DEADLINE_EXCEEDED before reaching the
//!   server) or loses its answer after the server applied it: the batch still completes and the
//!   trigger is not dead-lettered;
//! - a transaction's commit fails before reaching the server: the transaction is rolled back, so the
//!   retry does not wait on the locks its reads took (no ABORTED re-run);
//! - the exporter's commit of the export record loses its answer: the file is still written, at the
//!   recorded generation, and the ready event is not dead-lettered.

mod common;

use std::time::Duration;

use common::firestore_proxy;
use common::harness::{Harness, date, items, trigger};
use common::nba::{NbaEnv, exported, final_header};
use grpc_faults::{Fault, FaultKind, Rule};
use props_pipeline::batch::engine::TriggerReport;
use props_pipeline::batch::settings::EngineSettings;
use props_pipeline::batch::state::BatchState;
use props_pipeline::messages::{TriggerMessage, TriggerMode};
use props_pipeline::nba::domain::NbaWorker;
use props_pipeline::nba::model::ModelConfig;
use props_pipeline::nba::store::export_record;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_or_unanswered_seal_still_completes_its_batch() {
    // Each case on a project of its own, at the same time.
    futures::future::join_all(
        [FaultKind::LostAnswer, FaultKind::Unavailable, FaultKind::DeadlineExceeded].map(seal_faulted_with),
    )
    .await;
}

async fn seal_faulted_with(kind: FaultKind) {
    let mut harness = Harness::new("fault-seal").await;
    harness.domain.set_items(date(), items(12));
    let proxy = firestore_proxy();
    let engine = harness.engine_through(&proxy, "coordinator", EngineSettings::default()).await;
    // The seal is the first guarded header write that says RUNNING (the begin, a transaction, says
    // PUBLISHING).
    proxy.add_rule(Rule::new("UpdateDocument", Fault::new(kind)).body_contains(&["sealed_at", "RUNNING"]));
    harness.run_coordinator(&engine);
    harness.run_dead_letter(&engine);
    harness.run_worker(&[]);

    let batch_id = harness.publish_trigger(TriggerMode::Start).await;
    let header = harness.wait_for_final(&batch_id, Duration::from_secs(90)).await;
    assert_eq!(proxy.rules_armed(), 0, "{kind}: the seal commit was faulted");
    assert_eq!(header.state, BatchState::Complete, "{kind}: {header:?}");
    assert_eq!(header.done_count, Some(12));
    let records = harness.store.dead_letters(100).await.unwrap();
    assert!(records.is_empty(), "{kind}: nothing dead-lettered: {records:#?}");
    harness.stop().await;
}

/// firestore-rs leaves a transaction open on the server when its commit fails (it rolls back only
/// after a closure error), and the emulator then holds the locks of its reads until it expires it:
/// every retry of the same decision aborted with "Transaction lock timeout" for minutes. The store's
/// runner rolls such a transaction back, so the retry runs once, without an ABORTED re-run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_whose_commit_failed_leaves_no_lock_behind() {
    let metrics = props_pipeline::ops::metrics::install().expect("install the recorder");
    let harness = Harness::new("fault-orphan").await;
    harness.domain.set_items(date(), items(3));
    let proxy = firestore_proxy();
    let engine = harness.engine_through(&proxy, "coordinator", EngineSettings::default()).await;
    // The begin transaction's commit (it writes the new header, PUBLISHING) never reaches the server.
    proxy.add_rule(Rule::new("Commit", Fault::new(FaultKind::Unavailable)).body_contains(&["PUBLISHING"]));
    let first = engine.start(&trigger(TriggerMode::Start), "orphan-1").await;
    assert!(first.as_ref().is_err_and(|e| e.is_transient()), "the faulted begin is retryable: {first:?}");
    assert_eq!(proxy.rules_armed(), 0, "the begin commit was faulted");
    let before = retries(metrics.render(), "begin_batch");
    let second = engine.start(&trigger(TriggerMode::Start), "orphan-1").await;
    let after = retries(metrics.render(), "begin_batch");
    assert!(matches!(second, Ok(TriggerReport::Started { .. })), "the redelivered trigger starts: {second:?}");
    assert_eq!(after - before, 0, "the retry re-ran no transaction (no lock of the failed one was left)");
    harness.stop().await;
}

/// `props_transaction_retries_total` of `operation` in a Prometheus text rendering.
fn retries(text: String, operation: &str) -> u64 {
    let prefix = format!("props_transaction_retries_total{{operation=\"{operation}\"}} ");
    text.lines().find_map(|line| line.strip_prefix(&prefix)).map_or(0, |count| count.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_export_record_answer_still_writes_the_file() {
    const DATE: &str = "2023-05-02";
    let mut nba = NbaEnv::new("fault-export", &[DATE]).await;
    let proxy = firestore_proxy();
    nba.exporter_db = Some(nba.env.firestore_through(&proxy, "exporter").await);
    proxy.add_rule(Rule::new("Commit", Fault::new(FaultKind::LostAnswer)).body_contains(&["exports/", DATE]));
    nba.run_roles(NbaWorker::new(nba.store.clone(), ModelConfig::default()), EngineSettings::default());

    let trigger = TriggerMessage::new(DATE, TriggerMode::Start, "test".into(), None, String::new()).unwrap();
    let id = nba.env.publish(&nba.env.topics.trigger_topic, trigger.to_json(), &[]).await;
    let batch_id = props_pipeline::batch::documents::batch_id_for(DATE, &id);
    let header = final_header(&nba.store, &batch_id).await;
    assert_eq!(header.state, BatchState::Complete);
    let file = exported(&nba.export_path(DATE), header.generation, Duration::from_secs(90)).await;
    assert_eq!(proxy.rules_armed(), 0, "the export record's answer was lost");
    assert_eq!(file.batch_id, batch_id);
    let record = export_record(&nba.db, DATE).await.unwrap().expect("the export record");
    assert_eq!(record.generation, header.generation, "the record and the file agree");
    let records = nba.store.dead_letters(100).await.unwrap();
    assert!(records.is_empty(), "nothing dead-lettered: {records:#?}");
    nba.stop().await;
}
