//! `props-pipeline trigger` publishes what an operator would publish with gcloud.

mod common;

use std::time::Duration;

use common::TestEnv;
use props_pipeline::config::SubscriptionPolicy;
use props_pipeline::messages::{TriggerMessage, TriggerMode};

fn trigger(env: &TestEnv, args: &[&str]) -> std::process::Output {
    env.binary().arg("trigger").args(args).output().expect("run props-pipeline trigger")
}

#[tokio::test]
async fn trigger_publishes_the_operator_json_and_prints_the_message_id() {
    let env = TestEnv::new("trigger").await;
    env.setup(&SubscriptionPolicy::default()).await;
    let output = trigger(
        &env,
        &[
            "--game-date",
            "2024-04-22",
            "--mode",
            "regenerate_with_supersede",
            "--reason",
            "late injury news",
            "--metadata",
            r#"{"force":true,"ticket":"OPS-1"}"#,
            "--correlation-id",
            "corr-42",
        ],
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let message_id = String::from_utf8_lossy(&output.stdout).trim().to_string();
    assert!(!message_id.is_empty());

    let channel = &env.topology.channels()[0];
    let received = env.pull(&channel.subscription, 1, Duration::from_secs(20)).await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].message_id, message_id);
    let parsed = TriggerMessage::parse(&received[0].data).expect("the published body is a valid trigger");
    assert_eq!(parsed.game_date.to_string(), "2024-04-22");
    assert_eq!(parsed.mode, TriggerMode::RegenerateWithSupersede);
    assert_eq!(parsed.reason, "late injury news");
    assert!(parsed.force());
    assert_eq!(parsed.metadata["ticket"], "OPS-1");
    assert_eq!(parsed.correlation_id, "corr-42");
}

#[tokio::test]
async fn trigger_refuses_bad_input_without_publishing() {
    let env = TestEnv::new("trigger-bad").await;
    env.setup(&SubscriptionPolicy::default()).await;
    for (args, expected) in [
        (vec!["--game-date", "2024-02-30"], "invalid game_date \"2024-02-30\""),
        (vec!["--game-date", "2024-04-22", "--mode", "restart"], "invalid value 'restart'"),
        (vec!["--game-date", "2024-04-22", "--metadata", "[1]"], "metadata must be a JSON object"),
    ] {
        let output = trigger(&env, &args);
        assert!(!output.status.success(), "{args:?} should fail");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    let channel = &env.topology.channels()[0];
    let received = env.pull(&channel.subscription, 1, Duration::from_secs(2)).await;
    assert!(received.is_empty(), "nothing may be published: {received:?}");
}
