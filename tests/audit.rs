//! The audit trail against the real emulators: one record per trigger the coordinator saw (start,
//! duplicate start, regenerate, malformed), none added by redeliveries, consolidation counts added
//! when a batch consolidates, and `props-pipeline audit` listing them.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use common::harness::{DATE, Harness, completion, date, items, trigger};
use common::test_domain::Staged;
use props_pipeline::batch::audit::AuditOutcome;
use props_pipeline::batch::documents::{BatchHeader, batch_id_for};
use props_pipeline::batch::engine::{BatchEngine, TriggerReport};
use props_pipeline::batch::roles::TriggerRole;
use props_pipeline::batch::settings::EngineSettings;
use props_pipeline::batch::state::BatchState;
use props_pipeline::consumer::{Delivery, MessageHandler, Outcome};
use props_pipeline::messages::TriggerMode;

fn delivery(message_id: &str, body: impl Into<Bytes>) -> Delivery {
    Delivery {
        message_id: message_id.into(),
        data: body.into(),
        attributes: HashMap::new(),
        delivery_attempt: Some(1),
        subscription: "prediction-trigger-coordinator".into(),
    }
}

async fn complete_every_item(
    harness: &Harness,
    engine: &BatchEngine<common::test_domain::TestDomain>,
    batch: &BatchHeader,
) {
    for item in items(4) {
        harness.store.stage_result(&batch.batch_id, &item, &Staged { value: 1 }).await.unwrap();
        engine.complete(&completion(batch, &item)).await.unwrap();
    }
    assert_eq!(
        harness.wait_for_final(&batch.batch_id, std::time::Duration::from_secs(20)).await.state,
        BatchState::Complete
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_trigger_is_recorded_once_with_its_outcome_and_the_consolidation_counts() {
    let harness = Harness::new("audit").await;
    harness.domain.set_items(date(), items(4));
    let engine = harness.engine(EngineSettings::default());
    let store = harness.store.clone();

    // Start, and its redelivery.
    let started = engine.start(&trigger(TriggerMode::Start), "t1").await.unwrap();
    assert!(matches!(started, TriggerReport::Started { .. }), "{started:?}");
    let again = engine.start(&trigger(TriggerMode::Start), "t1").await.unwrap();
    assert!(matches!(again, TriggerReport::Resumed { .. }), "{again:?}");
    let first = store.header(&batch_id_for(DATE, "t1")).await.unwrap().unwrap();

    // A second start while the first batch runs is a no-op, and stays one when redelivered even if
    // the batch it found active has finished by then.
    let no_op = engine.start(&trigger(TriggerMode::Start), "t2").await.unwrap();
    assert_eq!(no_op, TriggerReport::NoOpActiveBatch { active_batch_id: first.batch_id.clone() });
    complete_every_item(&harness, &engine, &first).await;
    let redelivered = engine.start(&trigger(TriggerMode::Start), "t2").await.unwrap();
    assert_eq!(redelivered, TriggerReport::AlreadyDecided { outcome: AuditOutcome::NoOp });
    assert!(store.header(&batch_id_for(DATE, "t2")).await.unwrap().is_none(), "t2 created no batch");

    // Regenerate replaces the complete first batch; its consolidation supersedes the first's results.
    engine.start(&trigger(TriggerMode::RegenerateWithSupersede), "t3").await.unwrap();
    let third = store.header(&batch_id_for(DATE, "t3")).await.unwrap().unwrap();
    complete_every_item(&harness, &engine, &third).await;

    // A malformed trigger is rejected by the trigger role, recorded first; a redelivery adds nothing.
    let role = TriggerRole(Arc::clone(&engine));
    let body: &[u8] = br#"{"game_date":"2024-04-23","mode":"restart","reason":"typo in mode"}"#;
    for _ in 0..2 {
        let outcome = role.handle(&delivery("t4", body)).await;
        assert!(matches!(&outcome, Outcome::Reject(r) if r.contains("unknown variant `restart`")), "{outcome:?}");
    }

    let records = store.audit_records(None, 100).await.unwrap();
    let by_id: HashMap<_, _> = records.iter().map(|r| (r.trigger_message_id.as_str(), r)).collect();
    assert_eq!(records.len(), 4, "one record per trigger message: {records:#?}");

    let t1 = by_id["t1"];
    assert_eq!(
        (t1.outcome, t1.batch_id.as_deref(), t1.generation),
        (AuditOutcome::Started, Some(first.batch_id.as_str()), Some(1))
    );
    assert_eq!((t1.mode.as_str(), t1.reason.as_str(), t1.game_date.as_str()), ("start", "test", DATE));
    assert_eq!(t1.correlation_id, "t1", "an empty correlation id falls back to the message id");
    assert_eq!((t1.superseded_count, t1.replacement_count), (Some(0), Some(4)));
    assert!(t1.consolidated_at.is_some());

    let t2 = by_id["t2"];
    assert_eq!((t2.outcome, t2.batch_id.as_deref()), (AuditOutcome::NoOp, None));
    assert_eq!(t2.active_batch_id.as_deref(), Some(first.batch_id.as_str()));
    assert!(t2.detail.as_deref().is_some_and(|d| d.contains("RUNNING")), "{t2:?}");

    let t3 = by_id["t3"];
    assert_eq!((t3.outcome, t3.generation), (AuditOutcome::Superseding, Some(2)));
    assert_eq!(t3.mode, "regenerate_with_supersede");
    assert_eq!(t3.supersedes_batch_id.as_deref(), Some(first.batch_id.as_str()));
    assert_eq!(t3.supersedes_batch_state, Some(BatchState::Complete));
    assert_eq!((t3.superseded_count, t3.replacement_count), (Some(4), Some(4)), "4 superseded, 4 replacements");

    let t4 = by_id["t4"];
    assert_eq!(
        (t4.outcome, t4.game_date.as_str(), t4.mode.as_str()),
        (AuditOutcome::Rejected, "2024-04-23", "restart")
    );
    assert_eq!(t4.reason, "typo in mode");
    assert!(t4.detail.as_deref().is_some_and(|d| d.contains("unknown variant")), "{t4:?}");

    // The command lists them, newest first, and filters by date.
    let run = |args: &[&str]| {
        let output = harness.env.binary().arg("audit").args(args).output().expect("run props-pipeline audit");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let json: serde_json::Value = serde_json::from_str(&run(&["--json"])).expect("audit --json prints JSON");
    let listed: Vec<_> = json["records"].as_array().unwrap().iter().map(|r| r["trigger_message_id"].clone()).collect();
    assert_eq!(listed, ["t4", "t3", "t2", "t1"], "newest first");
    assert_eq!(json["records"][1]["outcome"], "superseding");
    assert_eq!(json["records"][1]["superseded_count"], 4);
    assert!(json["records"][0]["recorded_at"].as_str().is_some_and(|t| t.ends_with('Z')));
    let filtered: serde_json::Value = serde_json::from_str(&run(&["--json", "--game-date", DATE])).unwrap();
    assert_eq!(filtered["records"].as_array().map(Vec::len), Some(3), "the rejected trigger is for another date");
    let table = run(&[]);
    assert!(table.contains("superseding") && table.contains("no_op") && table.contains("rejected"), "{table}");

    // A rejected trigger's text of any size stays a bounded row in the table; --json has it whole.
    let long_reason = "r".repeat(3000);
    let body = format!(r#"{{"game_date":"2024-04-24","mode":"restart","reason":"{long_reason}"}}"#);
    role.handle(&delivery("t5", body)).await;
    let table = run(&[]);
    assert!(table.lines().all(|line| line.chars().count() < 400), "{table}");
    assert!(table.lines().any(|line| line.contains("rrr…")), "cut with an ellipsis: {table}");
    let json: serde_json::Value = serde_json::from_str(&run(&["--json", "--game-date", "2024-04-24"])).unwrap();
    assert_eq!(json["records"][0]["reason"], long_reason.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_repeating_the_correlation_id_of_the_current_batch_creates_nothing() {
    let harness = Harness::new("audit-dup").await;
    harness.domain.set_items(date(), items(4));
    let engine = harness.engine(EngineSettings::default());
    let with_id = |mode| {
        let mut t = trigger(mode);
        t.correlation_id = "backfill-abc-2024-04-22".into();
        t
    };
    engine.start(&with_id(TriggerMode::Start), "p1").await.unwrap();
    let first = harness.store.header(&batch_id_for(DATE, "p1")).await.unwrap().unwrap();
    complete_every_item(&harness, &engine, &first).await;
    // Even after the first batch finished, and even when regenerating: same action, same batch.
    for (mode, message_id) in [(TriggerMode::Start, "p2"), (TriggerMode::RegenerateWithSupersede, "p3")] {
        let report = engine.start(&with_id(mode), message_id).await.unwrap();
        assert_eq!(report, TriggerReport::Duplicate { batch_id: first.batch_id.clone() });
        let record = harness.store.audit_record(message_id).await.unwrap().unwrap();
        assert_eq!(
            (record.outcome, record.active_batch_id.as_deref()),
            (AuditOutcome::NoOp, Some(first.batch_id.as_str()))
        );
    }
    assert_eq!(harness.store.recent_batches(Some(DATE), 10).await.unwrap().len(), 1);
}
