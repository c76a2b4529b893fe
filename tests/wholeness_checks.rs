//! Near the end of a batch many counter shards empty at once, and each shard-emptying completion asks
//! the coordinator whether the batch is whole (a header read and a sum over the shards). Within one
//! coordinator, the checks of one batch that arrive while one runs share the single check that starts
//! after it (`src/batch/coalesce.rs`), and the batch still finalizes exactly once. Counted on the wire,
//! through a pass-through proxy (`crates/grpc-faults` with no faults) between the coordinator's engine
//! and the Firestore emulator; the workers record items directly.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use common::harness::{Harness, request};
use common::test_domain::{TestDomain, TestWorker, consolidation_calls};
use futures::StreamExt;
use props_pipeline::batch::documents::BatchHeader;
use props_pipeline::batch::engine::{BatchEngine, CompletionReport, FinalizeReport};
use props_pipeline::batch::roles::{WorkerReport, WorkerRole};
use props_pipeline::batch::settings::EngineSettings;
use props_pipeline::batch::state::BatchState;
use props_pipeline::messages::CompletionMessage;

const ITEMS: usize = 300;

/// Records `items` as the workers do (in one guarded commit each, 32 at a time): the announcements
/// of the commits that emptied their shard.
async fn record(worker: &WorkerRole<TestWorker>, header: &BatchHeader, items: &[String]) -> Vec<CompletionMessage> {
    let reports: Vec<_> = futures::stream::iter(items)
        .map(|item| async move { worker.record(&request(header, item)).await })
        .buffer_unordered(32)
        .collect()
        .await;
    let announcements = reports.into_iter().map(|report| match report {
        Ok(WorkerReport::Recorded(announcement)) => announcement,
        other => panic!("the worker records each item once: {other:?}"),
    });
    announcements.filter(|announcement| announcement.shard_remaining == Some(0)).collect()
}

/// Hands every completion to the coordinator's engine at once, each in its own task as the consumer's
/// handlers run: their reports.
async fn complete_all(
    engine: &Arc<BatchEngine<TestDomain>>,
    completions: &[CompletionMessage],
) -> Vec<CompletionReport> {
    let tasks: Vec<_> = completions
        .iter()
        .cloned()
        .map(|completion| {
            let engine = Arc::clone(engine);
            tokio::spawn(async move { engine.complete(&completion).await.expect("complete") })
        })
        .collect();
    let mut reports = Vec::new();
    for task in tasks {
        reports.push(task.await.expect("completion task"));
    }
    reports
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_shard_emptying_completions_share_their_wholeness_checks_and_finalize_once() {
    let harness = Harness::new("wholeness-checks").await;
    let header = harness.start_batch(&harness.engine(EngineSettings::default()), ITEMS).await;
    let worker = harness.worker_role(TestWorker { store: harness.store.clone(), failing: HashSet::new() });
    let proxy = common::firestore_proxy();
    let coordinator = harness.engine_through(&proxy, "coordinator", EngineSettings::default()).await;
    let mut seen = BTreeMap::new();

    // Every item but the last: all shards but the last empty, and each of their completions is
    // delivered twice (at least once, as Pub/Sub does). None of them can find the batch whole.
    let all = common::harness::items(ITEMS);
    let (last, rest) = all.split_last().expect("items");
    let emptied = record(&worker, &header, rest).await;
    assert_eq!(emptied.len() as u64, header.counter_shards - 1, "every shard but the last emptied");
    let twice: Vec<_> = emptied.iter().chain(&emptied).cloned().collect();
    let reports = complete_all(&coordinator, &twice).await;
    assert!(reports.iter().all(|r| *r == CompletionReport::Announced(FinalizeReport::NotReady)), "{reports:?}");
    let before_whole = common::requests_since(&proxy, &mut seen);
    println!("{} completions before the batch is whole: {before_whole:?}", twice.len());
    let checks = before_whole.get("RunAggregationQuery").copied().unwrap_or_default();
    assert!(checks >= 1, "a check summed the shards: {before_whole:?}");
    assert_eq!(before_whole.get("GetDocument"), Some(&checks), "a check reads the header, then sums the shards");
    assert_eq!(before_whole.values().sum::<u64>(), 2 * checks, "nothing else: {before_whole:?}");
    assert!(checks * 10 <= twice.len() as u64, "{checks} checks ran for {} completions", twice.len());

    // The last item: its completion twice, and two re-announcements of items a redelivered request
    // found terminal (their shards unknown), all at once. One check finalizes; the others find the
    // batch final.
    let finishing = record(&worker, &header, std::slice::from_ref(last)).await;
    assert_eq!(finishing.len(), 1, "the last item emptied the last shard");
    let again = |i: usize| CompletionMessage::ok(&request(&header, &all[i]), 1).announced(None);
    let completions = [finishing[0].clone(), finishing[0].clone(), again(0), again(150)];
    let reports = complete_all(&coordinator, &completions).await;
    let finalized = CompletionReport::Announced(FinalizeReport::Finalized(BatchState::Complete));
    let already = CompletionReport::Announced(FinalizeReport::AlreadyFinal(BatchState::Complete));
    assert_eq!(reports.iter().filter(|r| **r == finalized).count(), 1, "one check finalized: {reports:?}");
    assert_eq!(reports.iter().filter(|r| **r == already).count(), 3, "the others found it final: {reports:?}");
    let finishing_requests = common::requests_since(&proxy, &mut seen);
    println!("{} completions as the batch becomes whole: {finishing_requests:?}", completions.len());
    assert_eq!(
        finishing_requests.get("RunAggregationQuery"),
        Some(&1),
        "only the finalizing check summed the shards: {finishing_requests:?}"
    );

    let final_header = harness.store.header(&header.batch_id).await.unwrap().expect("the batch exists");
    assert_eq!(final_header.state, BatchState::Complete);
    assert!(final_header.ready_message_id.is_some(), "announced");
    assert_eq!(consolidation_calls(harness.store.db(), &header.batch_id).await, 1, "consolidated once");
    let ready = harness.ready_events(Duration::from_secs(3)).await;
    assert_eq!(ready.iter().filter(|r| r.batch_id == header.batch_id).count(), 1, "one ready event: {ready:?}");
    proxy.stop();
    harness.stop().await;
}
