//! Reliability against the real emulators: the dead-letter role and the failure policy, the sweeper's
//! redrive of lost requests, its housekeeping (re-announce, stuck alert, retention), and the
//! `dead_letters` record of malformed messages.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::harness::{DATE, Harness, date, items, trigger};
use common::test_domain::{Staged, TestWorker, consolidation_calls};
use common::{fast_retry_policy, poll_until};
use firestore::FirestoreInstant;
use props_pipeline::batch::dead_letters::DeadLetterRecord;
use props_pipeline::batch::documents::{BATCHES, BatchHeader, ItemStatus, batch_id_for};
use props_pipeline::batch::domain::{ItemHandler, ItemInputs, ItemOutcome};
use props_pipeline::batch::roles::WorkerRole;
use props_pipeline::batch::settings::EngineSettings;
use props_pipeline::batch::state::BatchState;
use props_pipeline::batch::store::NewBatch;
use props_pipeline::batch::sweep_policy::SweepSettings;
use props_pipeline::batch::sweeper::Sweeper;
use props_pipeline::consumer::{Delivery, MessageHandler, Outcome};
use props_pipeline::messages::{RequestMessage, TriggerMode};
use props_pipeline::topology::ChannelKind;
use tokio_util::sync::CancellationToken;

/// Never finishes the items in `retry_forever`: their requests exhaust their delivery attempts.
struct RetryingWorker {
    inner: TestWorker,
    retry_forever: HashSet<String>,
}

impl ItemHandler for RetryingWorker {
    type Result = Staged;

    async fn handle_item(&self, request: &RequestMessage, inputs: &ItemInputs) -> ItemOutcome<Staged> {
        if self.retry_forever.contains(&request.item) {
            return ItemOutcome::Retry(format!("{} is never ready (test)", request.item));
        }
        self.inner.handle_item(request, inputs).await
    }
}

/// Acks the first request of every item without doing anything, as a worker that crashed between
/// acking and working would; later requests of the item are handled for real.
struct LosingWorker {
    inner: WorkerRole<TestWorker>,
    seen: Mutex<HashSet<String>>,
    lost: std::sync::atomic::AtomicUsize,
}

impl MessageHandler for LosingWorker {
    async fn handle(&self, delivery: &Delivery) -> Outcome {
        let request = RequestMessage::parse(&delivery.data).expect("engine requests are valid");
        if self.seen.lock().unwrap().insert(request.item.clone()) {
            self.lost.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            return Outcome::Ack;
        }
        self.inner.handle(delivery).await
    }
}

fn fast_sweeps() -> SweepSettings {
    SweepSettings { sweep_interval_secs: 1, stall_after_secs: 2, stuck_after_secs: 600, max_redrives: 5 }
}

/// The dead-letter records once `enough` says so, or whatever is there after `within`. A batch can be
/// final before the record of the dead letter that finished it is written (the record comes last), and
/// Pub/Sub may forward a message twice, so callers wait for the records they mean, not for a count.
async fn dead_letters(
    harness: &Harness,
    within: Duration,
    enough: impl Fn(&[DeadLetterRecord]) -> bool,
) -> Vec<DeadLetterRecord> {
    let read = async || harness.store.dead_letters(100).await.expect("read dead letters");
    match poll_until(within, async || Some(read().await).filter(|records| enough(records))).await {
        Some(records) => records,
        None => read().await,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_that_exhaust_their_attempts_and_redrives_fail_their_items_and_the_failure_policy_decides() {
    // 1 of 20 (5%) is tolerated; 2 of 10 (20%) is over the default 10%.
    for (count, never_ready, expected_state) in
        [(20, &["player0003"][..], BatchState::Complete), (10, &["player0003", "player0007"][..], BatchState::Failed)]
    {
        let mut harness = Harness::with_policy("reliab-dlq", &fast_retry_policy(5)).await;
        harness.domain.set_items(date(), items(count));
        // One redrive: a request that never gets a verdict is put back to work once, then fails.
        let engine = harness.engine(EngineSettings { max_item_redrives: 1, ..Default::default() });
        harness.run_coordinator(&engine);
        harness.run_dead_letter(&engine);
        let worker = RetryingWorker {
            inner: TestWorker { store: harness.store.clone(), failing: HashSet::new() },
            retry_forever: never_ready.iter().map(|s| s.to_string()).collect(),
        };
        let role = harness.worker_role(worker);
        harness.consume(ChannelKind::Request, role);

        let batch_id = harness.publish_trigger(TriggerMode::Start).await;
        let header = harness.wait_for_final(&batch_id, Duration::from_secs(90)).await;
        assert_eq!(header.state, expected_state, "{count} items, {} never ready", never_ready.len());
        assert_eq!(header.failed_count, Some(never_ready.len() as u64));
        assert_eq!(header.done_count, Some((count - never_ready.len()) as u64));
        for item in never_ready {
            let marker = harness.store.item(&batch_id, item).await.unwrap().expect("marker");
            assert_eq!(marker.status, ItemStatus::Failed);
            assert_eq!(
                marker.error.as_deref(),
                Some("dead-lettered: not acknowledged after 5 delivery attempts; redrive cap 1 reached")
            );
            assert_eq!(marker.redrives, 1, "redriven once before it failed");
        }
        let failed_items = |records: &[DeadLetterRecord]| -> HashSet<String> {
            records
                .iter()
                .filter(|r| r.channel == "request" && r.action == "item marked failed: redrive cap reached")
                .map(|r| serde_json::from_str::<serde_json::Value>(&r.data).unwrap()["player_lookup"].to_string())
                .collect()
        };
        let records =
            dead_letters(&harness, Duration::from_secs(10), |r| failed_items(r).len() >= never_ready.len()).await;
        let recorded = failed_items(&records);
        assert_eq!(recorded.len(), never_ready.len(), "one record per dead request: {records:?}");
        let calls = consolidation_calls(harness.store.db(), &batch_id).await;
        match expected_state {
            BatchState::Complete => assert_eq!(calls, 1),
            _ => {
                assert_eq!(calls, 0, "a FAILED batch is not consolidated");
                let reason = header.failure_reason.unwrap_or_default();
                assert!(reason.contains("failed"), "{reason}");
            }
        }
        harness.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sweeper_redrives_a_batch_whose_requests_were_lost() {
    let mut harness = Harness::new("reliab-redrive").await;
    harness.domain.set_items(date(), items(30));
    let engine = harness.engine(EngineSettings::default());
    harness.run_coordinator(&engine);
    let worker = Arc::new(LosingWorker {
        inner: harness.worker_role(TestWorker { store: harness.store.clone(), failing: HashSet::new() }),
        seen: Mutex::default(),
        lost: Default::default(),
    });
    harness.consume(ChannelKind::Request, Arc::clone(&worker));
    harness.run_sweeper(&engine, fast_sweeps());

    let batch_id = harness.publish_trigger(TriggerMode::Start).await;
    let header = harness.wait_for_final(&batch_id, Duration::from_secs(60)).await;
    assert_eq!(header.state, BatchState::Complete);
    assert_eq!(header.done_count, Some(30));
    assert_eq!(worker.lost.load(std::sync::atomic::Ordering::SeqCst), 30, "every first request was lost");
    assert!(header.redrive_count >= 1, "the sweeper redrove the batch: {header:?}");
    assert_eq!(consolidation_calls(harness.store.db(), &batch_id).await, 1);
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_triggers_and_completions_are_recorded_with_their_reason() {
    let mut harness = Harness::new("reliab-malformed").await;
    let engine = harness.engine(EngineSettings::default());
    harness.run_coordinator(&engine);
    harness.run_dead_letter(&engine);
    let topics = harness.env.topics.clone();
    let bad_trigger = harness.env.publish(&topics.trigger_topic, "not json at all", &[]).await;
    let bad_completion = harness.env.publish(&topics.completion_topic, r#"{"batch_id": 7}"#, &[]).await;

    let records = dead_letters(&harness, Duration::from_secs(30), |r| {
        [&bad_trigger, &bad_completion].iter().all(|id| r.iter().any(|record| &&record.original_message_id == id))
    })
    .await;
    let find = |id: &str| records.iter().find(|r| r.original_message_id == id).cloned();
    let trigger = find(&bad_trigger).unwrap_or_else(|| panic!("malformed trigger recorded: {records:?}"));
    assert_eq!(trigger.channel, "trigger");
    assert_eq!(trigger.source_subscription, harness.channel(ChannelKind::Trigger).subscription);
    assert_eq!(trigger.data, "not json at all");
    assert!(trigger.reason.contains("not valid JSON"), "reason names the problem: {}", trigger.reason);
    let completion = find(&bad_completion).unwrap_or_else(|| panic!("malformed completion recorded: {records:?}"));
    assert_eq!(completion.channel, "completion");
    assert!(!completion.reason.is_empty());
    assert_eq!(completion.action, "recorded (not a valid completion)");
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_reannounces_alerts_on_a_stuck_batch_and_deletes_expired_ones() {
    let harness = Harness::new("reliab-sweep").await;
    let engine = harness.engine(EngineSettings { finalize_lease_secs: 1, ..Default::default() });

    // A COMPLETE batch whose finalizer died before announcing it.
    harness.domain.set_items(date(), items(2));
    engine.start(&trigger(TriggerMode::Start), "t1").await.unwrap();
    let unannounced = batch_id_for(DATE, "t1");
    harness.complete_without_announcing(&unannounced, &items(2), Duration::from_secs(1)).await;

    // A batch whose trigger died while publishing (never sealed).
    let stuck_trigger = props_pipeline::messages::TriggerMessage::new(
        "2024-04-23",
        TriggerMode::Start,
        "test".into(),
        None,
        String::new(),
    )
    .unwrap();
    let spec = NewBatch {
        trigger: stuck_trigger,
        trigger_message_id: "t2".into(),
        correlation_id: "c2".into(),
        expected_count: 3,
        counter_shards: 2,
        shards_count_down: false,
        tolerated_failed_fraction: 0.1,
        model_version: None,
        retention: Duration::from_secs(3600),
    };
    harness.store.begin_batch(&spec).await.unwrap();
    let stuck = batch_id_for("2024-04-23", "t2");

    // A finished batch past its retention.
    let old_date: props_pipeline::messages::GameDate = "2024-04-24".parse().unwrap();
    harness.domain.set_items(old_date, items(3));
    let old_trigger = props_pipeline::messages::TriggerMessage::new(
        "2024-04-24",
        TriggerMode::Start,
        "t".into(),
        None,
        String::new(),
    )
    .unwrap();
    engine.start(&old_trigger, "t3").await.unwrap();
    let expired = batch_id_for("2024-04-24", "t3");
    let mut old: BatchHeader = harness.store.header(&expired).await.unwrap().unwrap();
    old.expire_at = FirestoreInstant::now().checked_sub(firestore::jiff::SignedDuration::from_hours(1)).unwrap();
    harness
        .store
        .db()
        .fluent()
        .update()
        .in_col(BATCHES)
        .document_id(&expired)
        .object(&old)
        .execute::<BatchHeader>()
        .await
        .unwrap();

    tokio::time::sleep(Duration::from_millis(2100)).await;
    let settings = SweepSettings { sweep_interval_secs: 1, stall_after_secs: 1, stuck_after_secs: 2, max_redrives: 1 };
    let report = Sweeper::new(Arc::clone(&engine), settings).sweep_once(&CancellationToken::new()).await;
    assert_eq!(report.errors, 0, "{report:?}");
    assert_eq!(report.announced, 1, "{report:?}");
    assert!(harness.store.header(&unannounced).await.unwrap().unwrap().ready_message_id.is_some());
    assert_eq!(harness.ready_events(Duration::from_secs(3)).await.len(), 1, "announced once");
    assert!(report.stuck.contains(&stuck), "the never-sealed batch is reported stuck: {report:?}");
    assert_eq!(report.deleted, 1, "{report:?}");
    assert!(harness.store.header(&expired).await.unwrap().is_none(), "expired header deleted");
    assert!(harness.store.items_in(&expired, ItemStatus::Pending).await.unwrap().is_empty(), "its items too");
    assert!(harness.store.shards(&expired).await.unwrap().is_empty(), "and its counter shards");
    assert!(harness.store.header(&stuck).await.unwrap().is_some(), "unexpired batches are kept");
}
