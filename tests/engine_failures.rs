//! The batch engine's failure paths against the real emulators: a dead finalizer, a lost ready
//! event, the failure policy, a transient consolidation failure.

mod common;

use std::time::Duration;

use common::harness::{DATE, Harness, completion, date, items, trigger};
use common::test_domain::consolidation_calls;
use props_pipeline::batch::documents::{ItemStatus, batch_id_for};
use props_pipeline::batch::engine::{CompletionReport, EngineError, FinalizeReport};
use props_pipeline::batch::settings::EngineSettings;
use props_pipeline::batch::state::{BatchState, ClaimDecision};
use props_pipeline::messages::TriggerMode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalize_owner_dies_after_claiming_and_another_instance_finishes_after_the_lease() {
    let harness = Harness::new("engine-takeover").await;
    harness.domain.set_items(date(), items(5));
    let lease = EngineSettings { finalize_lease_secs: 3, instance_id: Some("b".into()), ..Default::default() };
    let engine_b = harness.engine(lease);
    engine_b.start(&trigger(TriggerMode::Start), "t1").await.unwrap();
    let batch_id = batch_id_for(DATE, "t1");
    let header = harness.store.header(&batch_id).await.unwrap().unwrap();
    // Record every completion without finalizing, as if instance "a" were handling them.
    for item in items(5) {
        harness.store.record_completion(&completion(&header, &item), header.counter_shards).await.unwrap();
    }
    let totals = harness.store.totals(&batch_id).await.unwrap();
    let claim = harness.store.claim_finalize(&batch_id, "a", Duration::from_secs(3), totals).await.unwrap();
    assert_eq!(claim.decision, ClaimDecision::Claim);
    // "a" dies here.

    let early = engine_b.finalize_if_whole(&batch_id).await;
    assert!(matches!(early, Err(EngineError::ClaimHeld { ref owner, .. }) if owner == "a"), "{early:?}");
    assert!(early.unwrap_err().is_transient(), "a held claim makes the message retry");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let report = engine_b.finalize_if_whole(&batch_id).await.unwrap();
    assert_eq!(report, FinalizeReport::Finalized(BatchState::Complete));
    let header = harness.store.header(&batch_id).await.unwrap().unwrap();
    let owner = header.finalize_claim.map(|c| c.owner).unwrap_or_default();
    assert!(owner.starts_with("b#"), "instance b holds the claim: {owner}");
    assert!(header.ready_message_id.is_some());
    assert_eq!(consolidation_calls(harness.store.db(), &batch_id).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_complete_batch_whose_ready_event_was_lost_is_announced_once_after_the_lease() {
    let harness = Harness::new("engine-reannounce").await;
    harness.domain.set_items(date(), items(2));
    let engine = harness.engine(EngineSettings { finalize_lease_secs: 2, ..Default::default() });
    engine.start(&trigger(TriggerMode::Start), "t1").await.unwrap();
    let batch_id = batch_id_for(DATE, "t1");
    // Another instance finalizes, then dies before publishing the ready event.
    harness.complete_without_announcing(&batch_id, &items(2), Duration::from_secs(2)).await;

    let report = engine.finalize_if_whole(&batch_id).await.unwrap();
    assert_eq!(report, FinalizeReport::AlreadyFinal(BatchState::Complete));
    let header = harness.store.header(&batch_id).await.unwrap().unwrap();
    assert!(header.ready_message_id.is_none(), "the finalizer's lease is live: leave the announcement to it");

    tokio::time::sleep(Duration::from_millis(2500)).await;
    for _ in 0..3 {
        engine.finalize_if_whole(&batch_id).await.unwrap();
    }
    let header = harness.store.header(&batch_id).await.unwrap().unwrap();
    assert!(header.ready_message_id.is_some());
    assert_eq!(harness.ready_events(Duration::from_secs(3)).await.len(), 1, "announced once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failure_policy_fails_a_batch_over_the_tolerated_fraction_and_completes_one_under_it() {
    for (failing, expected_state) in
        [(&["player0003"][..], BatchState::Complete), (&["player0003", "player0007"][..], BatchState::Failed)]
    {
        let mut harness = Harness::new("engine-policy").await;
        harness.domain.set_items(date(), items(10));
        let engine = harness.engine(EngineSettings { tolerated_failed_fraction: 0.1, ..Default::default() });
        harness.run_coordinator(&engine);
        harness.run_worker(failing);
        let batch_id = harness.publish_trigger(TriggerMode::Start).await;
        let header = harness.wait_for_final(&batch_id, Duration::from_secs(60)).await;
        let ready = harness.ready_events(Duration::from_secs(2)).await;
        let db = harness.store.db().clone();
        let failed_marker = harness.store.item(&batch_id, "player0003").await.unwrap().unwrap();
        harness.stop().await;

        assert_eq!(header.state, expected_state, "{} failing of 10", failing.len());
        assert_eq!(header.failed_count, Some(failing.len() as u64));
        assert_eq!(failed_marker.status, ItemStatus::Failed);
        assert!(failed_marker.error.as_deref().is_some_and(|e| e.contains("always fails")), "{failed_marker:?}");
        if expected_state == BatchState::Failed {
            assert!(header.failure_reason.as_deref().is_some_and(|r| r.contains("2 of 10 items failed")), "{header:?}");
            assert_eq!(consolidation_calls(&db, &batch_id).await, 0, "a failed batch is not consolidated");
            assert!(ready.is_empty(), "a failed batch is not announced: {ready:?}");
        } else {
            assert_eq!(consolidation_calls(&db, &batch_id).await, 1);
            assert_eq!(ready.len(), 1);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_consolidation_failure_releases_the_claim_for_an_immediate_retry() {
    let harness = Harness::new("engine-release").await;
    harness.domain.set_items(date(), items(2));
    harness.domain.failing_consolidations.store(1, std::sync::atomic::Ordering::SeqCst);
    // A long lease: without the release, the retry would have to wait ten minutes.
    let engine = harness.engine(EngineSettings { finalize_lease_secs: 600, ..Default::default() });
    engine.start(&trigger(TriggerMode::Start), "t1").await.unwrap();
    let batch_id = batch_id_for(DATE, "t1");
    let header = harness.store.header(&batch_id).await.unwrap().unwrap();
    engine.complete(&completion(&header, "player0000")).await.unwrap();
    let failed = engine.complete(&completion(&header, "player0001")).await;
    assert!(matches!(&failed, Err(e) if e.is_transient()), "{failed:?}");
    let after_failure = harness.store.header(&batch_id).await.unwrap().unwrap();
    assert_eq!(after_failure.state, BatchState::Finalizing);

    // The redelivered completion finishes the batch at once.
    let report = engine.complete(&completion(&header, "player0001")).await.unwrap();
    assert_eq!(report, CompletionReport::Duplicate(FinalizeReport::Finalized(BatchState::Complete)));
    assert_eq!(consolidation_calls(harness.store.db(), &batch_id).await, 2, "one failed call, one that succeeded");
}
