//! `setup` against the real Pub/Sub emulator.

mod common;

use std::time::{Duration, Instant};

use common::TestEnv;
use props_pipeline::config::{GcpSettings, SubscriptionPolicy};
use props_pipeline::gcp::pubsub::PubSub;
use props_pipeline::setup::{ResourceKind, SetupStatus, ensure_topology};

#[tokio::test]
async fn setup_twice_creates_everything_once_with_policies() {
    let env = TestEnv::new("setup-twice").await;
    let policy = SubscriptionPolicy::default();

    let first = env.setup(&policy).await;
    assert_eq!(first.entries.len(), 16, "{first}");
    assert_eq!(first.created(), 16, "{first}");

    let second = env.setup(&policy).await;
    assert_eq!(second.created(), 0, "{second}");
    assert!(second.entries.iter().all(|e| e.status == SetupStatus::AlreadyExisted), "{second}");

    for channel in env.topology.channels() {
        let main = env
            .pubsub
            .subscription_admin
            .get_subscription()
            .set_subscription(env.gcp.subscription_path(&channel.subscription))
            .send()
            .await
            .expect("main subscription exists");
        assert_eq!(main.topic, env.gcp.topic_path(&channel.topic));
        assert_eq!(main.ack_deadline_seconds, 60);
        let dead_letter = main.dead_letter_policy.expect("main subscription has a dead-letter policy");
        assert_eq!(dead_letter.dead_letter_topic, env.gcp.topic_path(&channel.dead_letter_topic));
        assert_eq!(dead_letter.max_delivery_attempts, 5);
        let retry = main.retry_policy.expect("main subscription has a retry policy");
        assert_eq!(retry.minimum_backoff.map(|d| d.seconds()), Some(10));
        assert_eq!(retry.maximum_backoff.map(|d| d.seconds()), Some(600));

        let dead_letter_sub = env
            .pubsub
            .subscription_admin
            .get_subscription()
            .set_subscription(env.gcp.subscription_path(&channel.dead_letter_subscription))
            .send()
            .await
            .expect("dead-letter subscription exists");
        assert_eq!(dead_letter_sub.topic, env.gcp.topic_path(&channel.dead_letter_topic));
        assert!(dead_letter_sub.retry_policy.is_some());
        assert!(dead_letter_sub.dead_letter_policy.is_none(), "a dead-letter subscription must not dead-letter again");
    }
}

#[tokio::test]
async fn setup_reports_subscriptions_whose_settings_differ() {
    let env = TestEnv::new("setup-differs").await;
    env.setup(&SubscriptionPolicy::default()).await;
    let changed = SubscriptionPolicy { max_delivery_attempts: 7, ..Default::default() };
    let report = env.setup(&changed).await;
    let differing: Vec<_> = report.entries.iter().filter(|e| matches!(e.status, SetupStatus::Differs(_))).collect();
    // Only the four main subscriptions carry a dead-letter policy.
    assert_eq!(differing.len(), 4, "{report}");
    assert!(differing.iter().all(|e| e.kind == ResourceKind::Subscription && !e.name.ends_with("dead-letter")));
    assert!(report.to_string().contains("after 5 attempts (want"), "{report}");
}

#[tokio::test]
async fn setup_against_an_unreachable_endpoint_fails_within_the_timeout() {
    let mut gcp = GcpSettings::new("props-unreachable", Some("127.0.0.1:1".into()), None);
    gcp.rpc_timeout_secs = 2;
    let pubsub = PubSub::connect(&gcp).await.expect("building clients does not connect");
    let topology = props_pipeline::topology::Topology::new(&Default::default());
    let started = Instant::now();
    let error = ensure_topology(&pubsub, &topology, &SubscriptionPolicy::default()).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert!(error.to_string().contains("creating topic"), "{error}");
}

#[tokio::test]
async fn setup_command_says_what_already_existed() {
    let env = TestEnv::new("setup-cli").await;
    let run = || env.binary().arg("setup").output().expect("run props-pipeline setup");
    let first = run();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(stdout.contains("16 created, 0 already existed"), "{stdout}");

    let second = run();
    assert!(second.status.success());
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(stdout.contains("0 created, 16 already existed"), "{stdout}");
    assert_eq!(stdout.matches("already existed subscription").count(), 8, "{stdout}");
}

#[test]
fn setup_command_rejects_a_bad_project_in_one_line() {
    let output = common::binary()
        .args(["setup", "--project", "Not_A_Project"])
        .env("PUBSUB_EMULATOR_HOST", "127.0.0.1:1")
        .output()
        .expect("run props-pipeline");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("invalid project id \"Not_A_Project\""), "{stderr}");
}
