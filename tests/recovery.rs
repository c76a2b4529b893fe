//! Recovery paths that need no fault injector, against the real emulators: a batch stuck in PUBLISHING
//! whose trigger is gone, a request that ran out of delivery attempts without a verdict, a finalize
//! claim held at shutdown, and an export file left behind its record by two generations' exports.
//! (Lost answers and frozen services need the gRPC fault injector: `tests/faults.rs`.)

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::harness::{DATE, Harness, NoExporter, completion, date, items, trigger};
use common::nba::publish_batch;
use common::test_domain::{Staged, TestWorker, consolidation_calls};
use common::{TestEnv, fast_retry_policy, wait_for};
use firestore::{FirestoreDb, FirestoreInstant};
use props_pipeline::batch::dead_letters::DeadLetterRecord;
use props_pipeline::batch::documents::{ItemStatus, batch_id_for};
use props_pipeline::batch::domain::{ItemHandler, ItemInputs, ItemOutcome};
use props_pipeline::batch::engine::FinalizeReport;
use props_pipeline::batch::redrive::ItemRedriveReport;
use props_pipeline::batch::settings::EngineSettings;
use props_pipeline::batch::state::{BatchState, ClaimDecision};
use props_pipeline::batch::store::{BatchStore, BeginOutcome, NewBatch};
use props_pipeline::batch::sweep_policy::SweepSettings;
use props_pipeline::config::ConsumerSettings;
use props_pipeline::messages::{ReadyMessage, RequestMessage, TriggerMode};
use props_pipeline::nba::export::{ExportFile, ExportOutcome, Exporter};
use props_pipeline::nba::store::export_record;
use props_pipeline::nba::types::PlayerPrediction;
use props_pipeline::runner::{Role, Roles};
use props_pipeline::topology::ChannelKind;
use tokio_util::sync::CancellationToken;

fn fast_sweeps() -> SweepSettings {
    SweepSettings { sweep_interval_secs: 1, stall_after_secs: 2, stuck_after_secs: 600, max_redrives: 3 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_publishing_batch_whose_trigger_is_gone_is_completed_by_the_sweeper() {
    let mut harness = Harness::new("recover-publishing").await;
    harness.domain.set_items(date(), items(12));
    let engine = harness.engine(EngineSettings::default());
    // A coordinator created the batch and wrote half its markers, then died for good; its trigger is
    // gone (acked, or dead-lettered after its attempts), so nothing would ever seal the batch.
    let spec = NewBatch {
        trigger: trigger(TriggerMode::Start),
        trigger_message_id: "gone".into(),
        correlation_id: "c-gone".into(),
        expected_count: 12,
        counter_shards: 2,
        shards_count_down: false,
        tolerated_failed_fraction: 0.1,
        model_version: None,
        retention: Duration::from_secs(3600),
    };
    let BeginOutcome::Created { header, .. } = harness.store.begin_batch(&spec).await.unwrap() else {
        panic!("a fresh batch");
    };
    harness
        .store
        .write_item_markers(&header.batch_id, &items(12)[..6], header.counter_shards, header.shards_count_down)
        .await
        .unwrap();
    harness.run_coordinator(&engine);
    harness.run_worker(&[]);
    harness.run_sweeper(&engine, fast_sweeps());

    let header = harness.wait_for_final(&header.batch_id, Duration::from_secs(60)).await;
    assert_eq!(header.state, BatchState::Complete, "{header:?}");
    assert_eq!(header.done_count, Some(12));
    assert!(header.sealed_at.is_some(), "the sweeper sealed it");
    assert!(header.redrive_count >= 1, "the resume counts against the redrive cap: {header:?}");
    let audit = harness.store.audit_record("gone").await.unwrap().expect("the trigger's audit record");
    assert!(audit.publishing_resumes >= 1, "the resume is in the audit: {audit:?}");
    assert_eq!(consolidation_calls(harness.store.db(), &header.batch_id).await, 1);
    harness.stop().await;
}

/// Answers Retry for the first `fail_first` deliveries of `flaky`, as a worker meeting an outage
/// longer than the subscription's backoff would; handles every other delivery for real.
struct OutageWorker {
    inner: TestWorker,
    flaky: String,
    fail_first: u32,
    deliveries: AtomicU32,
}

impl ItemHandler for OutageWorker {
    type Result = Staged;

    async fn handle_item(&self, request: &RequestMessage, inputs: &ItemInputs) -> ItemOutcome<Staged> {
        if request.item == self.flaky && self.deliveries.fetch_add(1, Ordering::SeqCst) < self.fail_first {
            return ItemOutcome::Retry("firestore reading player logs failed: Internal, GoAway (test)".into());
        }
        self.inner.handle_item(request, inputs).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_that_ran_out_of_attempts_without_a_verdict_is_redriven_not_failed() {
    let mut harness = Harness::with_policy("recover-redrive-item", &fast_retry_policy(5)).await;
    harness.domain.set_items(date(), items(6));
    let engine = harness.engine(EngineSettings::default());
    harness.run_coordinator(&engine);
    harness.run_dead_letter(&engine);
    let worker = OutageWorker {
        inner: TestWorker { store: harness.store.clone(), failing: HashSet::new() },
        flaky: "player0002".into(),
        // Every delivery of the first request: it is dead-lettered after its 5 attempts.
        fail_first: 5,
        deliveries: AtomicU32::new(0),
    };
    let role = harness.worker_role(worker);
    harness.consume(ChannelKind::Request, role);

    let batch_id = harness.publish_trigger(TriggerMode::Start).await;
    let header = harness.wait_for_final(&batch_id, Duration::from_secs(90)).await;
    assert_eq!(header.state, BatchState::Complete);
    assert_eq!(header.failed_count, Some(0), "no item failed for an outage: {header:?}");
    assert_eq!(header.done_count, Some(6));
    let marker = harness.store.item(&batch_id, "player0002").await.unwrap().expect("marker");
    assert_eq!(marker.status, ItemStatus::Done);
    assert_eq!(marker.redrives, 1, "its request was put back to work once");

    let records = harness.store.dead_letters(100).await.unwrap();
    let redriven: Vec<&DeadLetterRecord> = records.iter().filter(|r| r.channel == "request").collect();
    assert_eq!(redriven.len(), 1, "{records:?}");
    assert_eq!(redriven[0].action, "request re-published (item redrive 1 of 3)");
    assert_eq!(redriven[0].reason, "not acknowledged after 5 delivery attempts");
    let trigger_id = header.trigger_message_id.clone();
    let audit = harness.store.audit_record(&trigger_id).await.unwrap().expect("audit record");
    assert_eq!(audit.item_redrives, 1, "{audit:?}");
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_finalize_claim_held_at_shutdown_is_released_for_the_next_instance() {
    let harness = Harness::new("recover-claim").await;
    harness.domain.set_items(date(), items(4));
    // Instance "a" consolidates for a minute: the shutdown grace (1 s) aborts it mid-way.
    harness.domain.consolidation_delay_ms.store(60_000, Ordering::SeqCst);
    let engine_a = harness.engine(EngineSettings { instance_id: Some("a".into()), ..Default::default() });
    engine_a.start(&trigger(TriggerMode::Start), "t1").await.unwrap();
    let batch_id = batch_id_for(DATE, "t1");
    let header = harness.store.header(&batch_id).await.unwrap().unwrap();
    for item in items(4) {
        harness.store.record_completion(&completion(&header, &item), header.counter_shards).await.unwrap();
    }
    let roles = Roles {
        pubsub: harness.env.pubsub.clone(),
        topology: harness.env.topology.clone(),
        consumer: ConsumerSettings { concurrency: 4, shutdown_grace_secs: 1, ..Default::default() },
        engine: Arc::clone(&engine_a),
        item_handler: Arc::new(TestWorker { store: harness.store.clone(), failing: HashSet::new() }),
        exporter: Arc::new(NoExporter),
        completion_topic: harness.env.topics.completion_topic.clone(),
        sweep: Default::default(),
    };
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let run = tokio::spawn(async move { roles.run(&[Role::Coordinator], stop).await });
    // A redelivered completion reaches "a", which claims the batch and starts consolidating.
    let completion_topic = harness.env.topics.completion_topic.clone();
    harness.env.publish(&completion_topic, completion(&header, "player0000").to_json(), &[]).await;
    wait_for("instance a claiming the batch", Duration::from_secs(30), async || {
        let header = harness.store.header(&batch_id).await.unwrap().unwrap();
        (header.state == BatchState::Finalizing).then_some(())
    })
    .await;

    shutdown.cancel();
    run.await.expect("runner task").expect("runner stops cleanly");
    let header = harness.store.header(&batch_id).await.unwrap().unwrap();
    let claim = header.finalize_claim.expect("the claim stays recorded");
    assert!(claim.owner.starts_with("a#"), "{claim:?}");
    assert!(claim.lease_expires_at <= FirestoreInstant::now(), "released, not left for its 120 s lease: {claim:?}");

    // The next instance takes over at once instead of finding the claim held.
    harness.domain.consolidation_delay_ms.store(0, Ordering::SeqCst);
    let engine_b = harness.engine(EngineSettings { instance_id: Some("b".into()), ..Default::default() });
    let report = engine_b.finalize_if_whole(&batch_id).await.unwrap();
    assert_eq!(report, FinalizeReport::Finalized(BatchState::Complete));
    harness.stop().await;
}

/// Makes `generation` (of `batch_id`) the date's current predictions, for two players: its results,
/// and the date's pointer publishing it, as a finished batch leaves them.
async fn put_predictions(db: &FirestoreDb, batch_id: &str, generation: u64) {
    let store = BatchStore::new(db.clone());
    for player in ["alpha", "beta"] {
        let prediction: PlayerPrediction = serde_json::from_value(serde_json::json!({
            "player_lookup": player, "player_name": player, "team": "AAA", "opponent": "BBB",
            "game_date": DATE, "projected_minutes": 30.0 + generation as f64, "games_used": 10, "props": []
        }))
        .unwrap();
        store.stage_result(batch_id, player, &prediction).await.unwrap();
    }
    publish_batch(db, DATE, batch_id, generation).await;
}

fn ready(batch_id: &str, generation: u64) -> ReadyMessage {
    ReadyMessage { game_date: date(), batch_id: batch_id.into(), generation, results_count: 8, failed_count: 0 }
}

fn generation_in(path: &std::path::Path) -> u64 {
    serde_json::from_slice::<ExportFile>(&std::fs::read(path).unwrap()).unwrap().generation
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_generations_ready_events_interleaved_leave_the_newest_file() {
    let env = TestEnv::new("recover-export").await;
    let db = env.firestore().await;
    let dir = std::env::temp_dir().join(format!("props-recover-export-{}", rand::random::<u32>()));
    let path = dir.join(format!("{DATE}.json"));
    // Two exporter processes.
    let (first, second) = (Exporter::new(db.clone(), dir.clone()), Exporter::new(db.clone(), dir.clone()));

    put_predictions(&db, "b1", 1).await;
    assert!(matches!(first.export(&ready("b1", 1)).await.unwrap(), ExportOutcome::Written { .. }));
    let generation_one = std::fs::read(&path).unwrap();
    put_predictions(&db, "b2", 2).await;
    // Both generations' ready events at once, in both processes.
    let (older, newer) = (ready("b1", 1), ready("b2", 2));
    let (a, b, c, d) =
        tokio::join!(first.export(&newer), second.export(&older), second.export(&newer), first.export(&older));
    for outcome in [a, b, c, d] {
        outcome.unwrap();
    }
    assert_eq!(generation_in(&path), 2);
    assert_eq!(export_record(&db, DATE).await.unwrap().unwrap().generation, 2);

    // The worst interleaving: the first process checked before the second renamed, and its rename of
    // generation 1 lands last. The record says 2; the next ready event either process handles puts
    // the file back at the record's generation.
    std::fs::write(&path, &generation_one).unwrap();
    let outcome = second.export(&ready("b1", 1)).await.unwrap();
    assert_eq!(outcome, ExportOutcome::SkippedOlder { exported_generation: 2 });
    assert_eq!(generation_in(&path), 2, "the file is never left older than the record");
    assert_eq!(export_record(&db, DATE).await.unwrap().unwrap().generation, 2);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_dead_letter_counts_one_redrive_and_the_cap_fails_the_item() {
    let harness = Harness::new("recover-redrive-cap").await;
    let engine = harness.engine(EngineSettings { max_item_redrives: 2, ..Default::default() });
    let header = harness.start_batch(&engine, 2).await;
    let request = RequestMessage {
        batch_id: header.batch_id.clone(),
        generation: header.generation,
        game_date: date(),
        item: "player0001".into(),
        correlation_id: header.correlation_id.clone(),
    };
    let reason = "not acknowledged after 5 delivery attempts";
    // The same dead letter handled twice (its ack was lost) is one redrive.
    for _ in 0..2 {
        let report = engine.redrive_item(&request, reason, "dl-1").await.unwrap();
        assert_eq!(report, ItemRedriveReport::Redriven { redrive: 1, max: 2 });
    }
    let report = engine.redrive_item(&request, reason, "dl-2").await.unwrap();
    assert_eq!(report, ItemRedriveReport::Redriven { redrive: 2, max: 2 });
    let report = engine.redrive_item(&request, reason, "dl-3").await.unwrap();
    assert!(matches!(report, ItemRedriveReport::Failed(_)), "{report:?}");
    let marker = harness.store.item(&header.batch_id, "player0001").await.unwrap().unwrap();
    assert_eq!(marker.status, ItemStatus::Failed);
    assert_eq!(
        marker.error.as_deref(),
        Some("dead-lettered: not acknowledged after 5 delivery attempts; redrive cap 2 reached")
    );
    let audit = harness.store.audit_record("t1").await.unwrap().unwrap();
    assert_eq!(audit.item_redrives, 2, "{audit:?}");
    // A terminal item is not redriven again.
    let report = engine.redrive_item(&request, reason, "dl-4").await.unwrap();
    assert!(matches!(report, ItemRedriveReport::Moot(_)), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_claims_on_the_header_end_with_exactly_one_holder_and_no_error() {
    let harness = Harness::new("recover-claim-race").await;
    let engine = harness.engine(EngineSettings::default());
    let header = harness.start_batch(&engine, 3).await;
    let batch_id = header.batch_id.clone();
    for item in items(3) {
        harness.store.record_completion(&completion(&header, &item), header.counter_shards).await.unwrap();
    }
    let totals = harness.store.totals(&batch_id).await.unwrap();
    // Eight attempts that saw the last completion at once: guarded writes, not transactions, so the
    // losers re-read and find the winner's claim instead of contending until they give up.
    let claims = (0..8).map(|i| {
        let store = harness.store.clone();
        let batch_id = batch_id.clone();
        async move { store.claim_finalize(&batch_id, &format!("racer#{i}"), Duration::from_secs(60), totals).await }
    });
    let outcomes = futures::future::join_all(claims).await;
    let decisions: Vec<ClaimDecision> = outcomes.into_iter().map(|o| o.expect("no error").decision).collect();
    let winners = decisions.iter().filter(|d| **d == ClaimDecision::Claim).count();
    assert_eq!(winners, 1, "{decisions:?}");
    assert!(
        decisions.iter().all(|d| matches!(d, ClaimDecision::Claim | ClaimDecision::HeldByOther { .. })),
        "{decisions:?}"
    );
    let header = harness.store.header(&batch_id).await.unwrap().unwrap();
    assert_eq!(header.state, BatchState::Finalizing);
    assert_eq!(header.header_writes, 3, "create, seal, one claim: {header:?}");
}

/// A ready event that ran out of delivery attempts without the exporter's verdict (Pub/Sub forwarded
/// it to the dead-letter topic; an outage, say) is not left for an operator: the dead-letter role
/// announces the batch again, so the file is still written.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_ready_event_out_of_attempts_is_announced_again() {
    let mut harness = Harness::new("rec-ready").await;
    harness.domain.set_items(date(), items(3));
    let engine = harness.engine(EngineSettings::default());
    harness.run_coordinator(&engine);
    harness.run_worker(&[]);
    let batch_id = harness.publish_trigger(TriggerMode::Start).await;
    let first = harness.wait_for_final(&batch_id, Duration::from_secs(60)).await;
    assert_eq!(first.state, BatchState::Complete);
    let announced = harness.ready_events(Duration::from_secs(3)).await;
    assert_eq!(announced.len(), 1, "{announced:?}");

    // A fresh subscription for the second announcement: the emulator may hand a message to the
    // first pull's closed stream and withhold it until its ack deadline.
    let tap = harness.env.create_subscription("rec-ready-tap", &harness.env.topics.ready_topic).await;
    // What Pub/Sub's dead-letter policy forwards: the message as it was, with its delivery count.
    harness.run_dead_letter(&engine);
    let dead_letter_topic = harness.channel(ChannelKind::Ready).dead_letter_topic;
    let attributes = [("CloudPubSubDeadLetterSourceDeliveryCount", "10")];
    harness.env.publish(&dead_letter_topic, announced[0].to_json(), &attributes).await;

    let again: Vec<ReadyMessage> = harness
        .env
        .pull(&tap, 1, Duration::from_secs(20))
        .await
        .iter()
        .map(|m| ReadyMessage::parse(&m.data).expect("a valid ready event"))
        .collect();
    // The dead letter is recorded after the announcement it led to, so the event can arrive first.
    let records = common::poll_until(Duration::from_secs(20), async || {
        Some(harness.store.dead_letters(10).await.unwrap()).filter(|records| !records.is_empty())
    })
    .await
    .unwrap_or_default();
    let header = harness.store.header(&batch_id).await.unwrap().unwrap();
    harness.stop().await;
    assert_eq!(again.len(), 1, "announced once more: {again:?}; {records:?}; {header:?}");
    assert_eq!((again[0].batch_id.as_str(), again[0].generation), (batch_id.as_str(), first.generation));
    assert!(header.ready_message_id.is_some_and(|id| Some(&id) != first.ready_message_id.as_ref()), "re-recorded");
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].action, "ready event published again", "{records:?}");
}
