//! Finalizing a batch costs the same at any size: the claim, the totals (one aggregation over the
//! counter shards), the finish commit that flips the date's pointer, and the ready outbox. Counted on
//! the wire, through a pass-through proxy (`crates/grpc-faults` with no faults) between the finalizing
//! engine and the Firestore emulator.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use common::harness::{Harness, completion};
use futures::StreamExt;
use props_pipeline::batch::engine::FinalizeReport;
use props_pipeline::batch::settings::EngineSettings;
use props_pipeline::batch::state::BatchState;
use props_pipeline::nba::store::published_batch;

/// The Firestore requests of one finalize, method by method (11 in all).
const EXPECTED: [(&str, u64); 5] = [
    // The consolidation's audit record of the trigger (a transaction).
    ("BeginTransaction", 1),
    // That transaction's commit; the finish (header and, publishing the batch, the date's pointer).
    ("Commit", 2),
    // The header; the claim's read of it; the date's pointer (the fence, and the finish's guard with
    // the claim's written header); the audit record; the ready outbox's read of the header.
    ("GetDocument", 5),
    // The totals, over the counter shards.
    ("RunAggregationQuery", 1),
    // The claim; the ready outbox.
    ("UpdateDocument", 2),
];

/// Firestore requests (by method) of one `finalize_if_whole` of a whole batch of `items` items.
async fn finalize_requests(items: usize) -> BTreeMap<String, u64> {
    let harness = Harness::new(&format!("finalize-cost-{items}")).await;
    harness.domain.pointer_only.store(true, Ordering::SeqCst);
    let header = harness.start_batch(&harness.engine(EngineSettings::default()), items).await;
    // Every item completes, without finalizing (the store records; only the engine finalizes).
    let names: Vec<String> = common::harness::items(items);
    futures::stream::iter(&names)
        .for_each_concurrent(32, |item| {
            let (store, completion) = (&harness.store, completion(&header, item));
            async move {
                store.record_completion(&completion, header.counter_shards).await.expect("record a completion");
            }
        })
        .await;

    let proxy = common::firestore_proxy();
    let engine = harness.engine_through(&proxy, "finalizer", EngineSettings::default()).await;
    let report = engine.finalize_if_whole(&header.batch_id).await.expect("finalize");
    assert_eq!(report, FinalizeReport::Finalized(BatchState::Complete));
    let published = published_batch(harness.store.db(), common::harness::DATE).await.unwrap();
    assert_eq!(published, Some((header.batch_id.clone(), header.generation)), "the pointer names the batch");
    let calls = common::requests_by_method(&proxy);
    proxy.stop();
    harness.stop().await;
    calls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_finalize_issues_the_same_firestore_requests_at_200_and_2000_items() {
    let small = finalize_requests(200).await;
    let large = finalize_requests(2000).await;
    println!("finalize requests at N = 200: {small:?}; at N = 2,000: {large:?}");
    assert!(!small.is_empty(), "the finalize went through the proxy");
    assert_eq!(small, large, "the same requests, method by method, whatever the batch size");
    let expected: BTreeMap<String, u64> = EXPECTED.iter().map(|&(method, n)| (method.to_string(), n)).collect();
    assert_eq!(small, expected, "the requests of one finalize (a change here is a cost change)");
}
