//! `props-pipeline status` reads batches and their progress from Firestore.

mod common;

use std::sync::Arc;

use common::test_domain::TestDomain;
use common::{TestEnv, fast_retry_policy};
use props_pipeline::batch::engine::BatchEngine;
use props_pipeline::batch::settings::EngineSettings;
use props_pipeline::batch::store::BatchStore;
use props_pipeline::messages::{CompletionMessage, RequestMessage, TriggerMessage, TriggerMode};

fn status(env: &TestEnv, args: &[&str]) -> std::process::Output {
    env.binary().arg("status").args(args).output().expect("run props-pipeline status")
}

#[tokio::test]
async fn status_json_shows_state_and_progress_of_each_batch() {
    let env = TestEnv::new("status").await;
    env.setup(&fast_retry_policy(5)).await;
    let store = BatchStore::new(env.firestore().await);
    let domain = Arc::new(TestDomain::new(store.clone()));
    let date = "2024-05-01".parse().unwrap();
    domain.set_items(date, vec!["a".into(), "b".into(), "c".into()]);
    let engine =
        BatchEngine::new(store.clone(), env.pubsub.clone(), env.topics.clone(), domain, EngineSettings::default());
    let trigger =
        TriggerMessage::new("2024-05-01", TriggerMode::Start, "status test".into(), None, "corr-7".into()).unwrap();
    engine.start(&trigger, "m1").await.unwrap();
    let request = RequestMessage {
        batch_id: "2024-05-01-mm1".into(),
        generation: 1,
        game_date: date,
        item: "a".into(),
        correlation_id: String::new(),
    };
    engine.complete(&CompletionMessage::ok(&request, 4)).await.unwrap();
    let request = RequestMessage { item: "b".into(), ..request };
    engine.complete(&CompletionMessage::failed(&request, "no history")).await.unwrap();

    let output = status(&env, &["--json", "--game-date", "2024-05-01"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("status --json prints JSON");
    let batches = report["batches"].as_array().expect("a batches array");
    assert_eq!(batches.len(), 1);
    let batch = &batches[0];
    assert_eq!(batch["batch_id"], "2024-05-01-mm1");
    assert_eq!(batch["game_date"], "2024-05-01");
    assert_eq!(batch["generation"], 1);
    assert_eq!(batch["state"], "RUNNING");
    assert_eq!(batch["mode"], "start");
    assert_eq!(batch["reason"], "status test");
    assert_eq!(batch["correlation_id"], "corr-7");
    assert_eq!(
        (batch["expected"].as_u64(), batch["done"].as_u64(), batch["failed"].as_u64()),
        (Some(3), Some(1), Some(1))
    );
    assert_eq!(batch["pending"], 1);
    assert_eq!(batch["ready_published"], false);
    assert!(batch["created_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{batch}");

    let table = status(&env, &[]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("2024-05-01-mm1") && text.contains("RUNNING"), "{text}");

    let other_date = status(&env, &["--json", "--game-date", "2024-05-02"]);
    let report: serde_json::Value = serde_json::from_slice(&other_date.stdout).unwrap();
    assert_eq!(report["batches"].as_array().map(Vec::len), Some(0));

    let bad = status(&env, &["--game-date", "May 1"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid --game-date"));
}
