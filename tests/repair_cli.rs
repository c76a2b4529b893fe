//! The operator commands for a batch that does not finish, run as the real binary: `missing` lists the
//! pending items and the failed ones with their errors, `redrive` re-publishes their requests, and both refuse what they cannot do.

mod common;

use std::time::Duration;

use common::harness::{DATE, Harness, date, items};
use firestore::FirestoreInstant;
use props_pipeline::batch::dead_letters::DeadLetterRecord;
use props_pipeline::batch::documents::batch_id_for;
use props_pipeline::batch::settings::EngineSettings;
use props_pipeline::messages::{CompletionMessage, RequestMessage, TriggerMode};
use props_pipeline::topology::ChannelKind;

fn run(harness: &Harness, args: &[&str]) -> (bool, String, String) {
    let output = harness.env.binary().args(args).env("PROPS_LOG_FORMAT", "text").output().expect("run props-pipeline");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.success(), text(&output.stdout), text(&output.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_lists_pending_items_and_redrive_republishes_exactly_those() {
    let harness = Harness::new("repair-cli").await;
    harness.domain.set_items(date(), items(6));
    let engine = harness.engine(EngineSettings::default());
    let trigger = common::harness::trigger(TriggerMode::Start);
    engine.start(&trigger, "t1").await.unwrap();
    let batch_id = batch_id_for(DATE, "t1");
    let header = harness.store.header(&batch_id).await.unwrap().unwrap();
    for item in ["player0001", "player0004"] {
        let completion = common::harness::completion(&header, item);
        harness.store.record_completion(&completion, header.counter_shards).await.unwrap();
    }
    let request = RequestMessage {
        batch_id: batch_id.clone(),
        generation: header.generation,
        game_date: date(),
        item: "player0005".into(),
        correlation_id: String::new(),
    };
    let failed = CompletionMessage::failed(&request, "1 usable games before the game date, 3 required");
    harness.store.record_completion(&failed, header.counter_shards).await.unwrap();

    let (ok, stdout, stderr) = run(&harness, &["missing", &batch_id, "--json"]);
    assert!(ok, "missing failed: {stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON report");
    assert_eq!(report["pending"], serde_json::json!(["player0000", "player0002", "player0003"]));
    assert_eq!(
        report["failed"],
        serde_json::json!([{"item": "player0005", "error": "1 usable games before the game date, 3 required", "attempts": 1}])
    );
    assert_eq!(report["expected"], 6);
    assert_eq!(report["state"], "RUNNING");

    let (ok, table, stderr) = run(&harness, &["missing", &batch_id]);
    assert!(ok, "missing failed: {stderr}");
    assert!(table.starts_with(&format!("{batch_id}: 3 of 6 items pending, 1 failed")), "{table}");
    let failed_row = table.lines().find(|l| l.starts_with("player0005")).unwrap_or_default();
    assert!(failed_row.contains("failed") && failed_row.contains("1 usable games before the game date"), "{table}");

    let (ok, stdout, stderr) = run(&harness, &["redrive", &batch_id, "--json"]);
    assert!(ok, "redrive failed: {stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON report");
    assert_eq!((report["republished"].as_u64(), report["redrive_count"].as_u64()), (Some(3), Some(1)));
    assert_eq!(harness.store.header(&batch_id).await.unwrap().unwrap().redrive_count, 1);

    // No worker ran: the subscription holds the 6 original requests and the 3 re-published ones.
    let subscription = harness.channel(ChannelKind::Request).subscription;
    let received = harness.env.pull(&subscription, 9, Duration::from_secs(20)).await;
    let mut players: Vec<String> =
        received.iter().map(|m| RequestMessage::parse(&m.data).expect("a valid request").item).collect();
    players.sort();
    assert_eq!(players.len(), 9, "{players:?}");
    for pending in ["player0000", "player0002", "player0003"] {
        assert_eq!(players.iter().filter(|p| *p == pending).count(), 2, "{pending} published twice");
    }
    for done in ["player0001", "player0004", "player0005"] {
        assert_eq!(players.iter().filter(|p| *p == done).count(), 1, "{done} not re-published");
    }

    let (ok, _, stderr) = run(&harness, &["redrive", "2024-04-22-mnope"]);
    assert!(!ok);
    assert!(stderr.contains("no batch 2024-04-22-mnope"), "{stderr}");
    let (ok, _, stderr) = run(&harness, &["missing", "2024-04-22-mnope"]);
    assert!(!ok);
    assert!(stderr.contains("no batch 2024-04-22-mnope"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_a_table_with_long_reasons_cut_and_whole_in_json() {
    let harness = Harness::new("dead-letters-cli").await;
    let (ok, stdout, stderr) = run(&harness, &["dead-letters"]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), "no dead letters");

    let reason = format!("invalid trigger: {}", "x".repeat(300));
    let record = DeadLetterRecord {
        channel: "trigger".into(),
        source_subscription: "prediction-trigger-coordinator".into(),
        original_message_id: "42".into(),
        reason: reason.clone(),
        delivery_attempts: Some(5),
        data: "{".into(),
        data_truncated: false,
        attributes_json: "{}".into(),
        action: "recorded".into(),
        recorded_at: FirestoreInstant::now(),
    };
    harness.store.record_dead_letter(&record).await.unwrap();

    let (ok, table, stderr) = run(&harness, &["dead-letters"]);
    assert!(ok, "{stderr}");
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "a header and one row: {table}");
    assert!(lines[0].contains("SUBSCRIPTION") && lines[0].contains("REASON"), "{table}");
    assert!(
        lines[1].contains("prediction-trigger-coordinator") && lines[1].contains("invalid trigger: xxx"),
        "{table}"
    );
    assert!(lines[1].contains('…') && !lines[1].contains(&reason), "the reason is cut: {table}");
    // The header's columns start where the row's do (in characters: `…` is one).
    let column = |line: &str, text: &str| line.find(text).map(|at| line[..at].chars().count());
    assert_eq!(column(lines[0], "CHANNEL"), column(lines[1], "trigger "), "{table}");
    assert_eq!(column(lines[0], "ACTION"), column(lines[1], "recorded"), "{table}");

    let (ok, json, stderr) = run(&harness, &["dead-letters", "--json"]);
    assert!(ok, "{stderr}");
    let records: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(records[0]["reason"], reason.as_str(), "whole in JSON");
}
