//! The operator commands for a batch that does not finish, run as the real binary: `missing` lists the
//! pending items, `redrive` re-publishes their requests, and both refuse what they cannot do.

mod common;

use std::process::Command;
use std::time::Duration;

use common::harness::{DATE, Harness, date, items};
use props_pipeline::batch::documents::batch_id_for;
use props_pipeline::batch::settings::EngineSettings;
use props_pipeline::messages::{RequestMessage, TriggerMode};
use props_pipeline::topology::ChannelKind;

fn run(harness: &Harness, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_props-pipeline"))
        .args(args)
        .envs(harness.env.binary_env())
        .env("PROPS_LOG_FORMAT", "text")
        .output()
        .expect("run props-pipeline");
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

    let (ok, stdout, stderr) = run(&harness, &["missing", &batch_id, "--json"]);
    assert!(ok, "missing failed: {stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON report");
    assert_eq!(report["pending"], serde_json::json!(["player0000", "player0002", "player0003", "player0005"]));
    assert_eq!(report["expected"], 6);
    assert_eq!(report["state"], "RUNNING");

    let (ok, stdout, stderr) = run(&harness, &["redrive", &batch_id, "--json"]);
    assert!(ok, "redrive failed: {stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON report");
    assert_eq!((report["republished"].as_u64(), report["redrive_count"].as_u64()), (Some(4), Some(1)));
    assert_eq!(harness.store.header(&batch_id).await.unwrap().unwrap().redrive_count, 1);

    // No worker ran: the subscription holds the 6 original requests and the 4 re-published ones.
    let subscription = harness.channel(ChannelKind::Request).subscription;
    let received = harness.env.pull(&subscription, 10, Duration::from_secs(20)).await;
    let mut players: Vec<String> =
        received.iter().map(|m| RequestMessage::parse(&m.data).expect("a valid request").player_lookup).collect();
    players.sort();
    assert_eq!(players.len(), 10, "{players:?}");
    for pending in ["player0000", "player0002", "player0003", "player0005"] {
        assert_eq!(players.iter().filter(|p| *p == pending).count(), 2, "{pending} published twice");
    }
    for done in ["player0001", "player0004"] {
        assert_eq!(players.iter().filter(|p| *p == done).count(), 1, "{done} not re-published");
    }

    let (ok, _, stderr) = run(&harness, &["redrive", "2024-04-22-mnope"]);
    assert!(!ok);
    assert!(stderr.contains("does not exist"), "{stderr}");
    let (ok, _, stderr) = run(&harness, &["missing", "2024-04-22-mnope"]);
    assert!(!ok);
    assert!(stderr.contains("no batch 2024-04-22-mnope"), "{stderr}");
}
