//! The HTTP endpoints, metrics and JSON logs of a real `props-pipeline run` process.

mod common;

use std::time::Duration;

use common::TestEnv;
use common::ops::{GatedProxy, Process, http_get, metric, poll_http};
use props_pipeline::config::SubscriptionPolicy;
use props_pipeline::messages::{CompletionMessage, CompletionStatus};
use props_pipeline::topology::ChannelKind;

const RUN_WORKER: [&str; 4] = ["run", "worker", "--http-addr", "127.0.0.1:0"];

/// The worker's Pub/Sub connections go through a proxy that holds them: the process is up but its
/// consumer has not subscribed, then the proxy opens and it does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_until_the_consumer_subscribes_then_200() {
    let env = TestEnv::new("ops-ready").await;
    env.setup(&SubscriptionPolicy::default()).await;
    let proxy = GatedProxy::start(env.gcp.pubsub_emulator_host.clone().unwrap()).await;
    let process = Process::start(env.binary().args(RUN_WORKER).env("PUBSUB_EMULATOR_HOST", proxy.addr.to_string()));
    let addr = process.http_addr();

    assert_eq!(http_get(addr, "/healthz").unwrap(), (200, "ok\n".to_string()));
    let subscription = env.topology.channel(ChannelKind::Request).subscription.clone();
    let waiting = format!("not ready: not subscribed: {subscription}\n");
    // Right after the bind the runner may not have created its consumers yet ("starting").
    let answer = poll_http(addr, "/readyz", Duration::from_secs(10), |_, body| body == waiting);
    assert_eq!(answer, (503, waiting.clone()));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(http_get(addr, "/readyz").unwrap(), (503, waiting), "still waiting while Pub/Sub does not answer");
    assert_eq!(http_get(addr, "/healthz").unwrap().0, 200, "alive all along");

    proxy.open();
    let answer = poll_http(addr, "/readyz", Duration::from_secs(30), |status, _| status == 200);
    assert_eq!(answer, (200, "ready\n".to_string()));

    let (status, text) = http_get(addr, "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(text.contains("# TYPE props_messages_total counter"), "{text}");
    assert!(text.contains("# TYPE props_handler_seconds histogram"), "{text}");
    let acked = format!(r#"props_messages_total{{subscription="{subscription}",outcome="ack"}}"#);
    assert_eq!(metric(&text, &acked), Some(0.0), "series exist from the start: {text}");
    process.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handled_messages_move_the_metrics_and_log_their_batch_fields() {
    let env = TestEnv::new("ops-metrics").await;
    env.setup(&SubscriptionPolicy::default()).await;
    let process = Process::start(env.binary().args(RUN_WORKER));
    let addr = process.http_addr();
    let answer = poll_http(addr, "/readyz", Duration::from_secs(30), |status, _| status == 200);
    assert_eq!(answer.0, 200, "{answer:?}");

    // No slate is loaded, so the worker records the item failed, announces it and acks the request.
    let store = props_pipeline::batch::store::BatchStore::new(env.firestore().await);
    store
        .write_item_markers("2024-04-22-mops", &["nobody".to_string()], 1, false)
        .await
        .expect("write the item's marker");
    let request = r#"{"batch_id":"2024-04-22-mops","generation":3,"game_date":"2024-04-22",
        "player_lookup":"nobody","correlation_id":"corr-ops"}"#;
    let channel = env.topology.channel(ChannelKind::Request).clone();
    let request_id = env.publish(&channel.topic, request, &[]).await;
    env.publish(&channel.topic, "not json", &[]).await;

    let series = |name: &str, outcome: Option<&str>| match outcome {
        Some(outcome) => format!(r#"{name}{{subscription="{}",outcome="{outcome}"}}"#, channel.subscription),
        None => format!(r#"{name}{{subscription="{}"}}"#, channel.subscription),
    };
    let (_, text) = poll_http(addr, "/metrics", Duration::from_secs(30), |_, text| {
        metric(text, &series("props_messages_total", Some("ack"))) == Some(1.0)
            && metric(text, &series("props_messages_total", Some("reject"))) == Some(1.0)
    });
    assert_eq!(metric(&text, &series("props_messages_total", Some("ack"))), Some(1.0), "{text}");
    assert_eq!(metric(&text, &series("props_messages_total", Some("reject"))), Some(1.0), "{text}");
    assert_eq!(metric(&text, &series("props_messages_total", Some("retry"))), Some(0.0), "{text}");
    assert_eq!(metric(&text, &series("props_dead_lettered_total", None)), Some(1.0), "{text}");
    assert_eq!(metric(&text, &series("props_handler_seconds_count", None)), Some(2.0), "{text}");

    let completions =
        env.pull(&env.topology.channel(ChannelKind::Completion).subscription, 1, Duration::from_secs(20)).await;
    let completion = CompletionMessage::parse(&completions[0].data).expect("a valid completion");
    assert_eq!((completion.batch_id.as_str(), completion.status), ("2024-04-22-mops", CompletionStatus::Failed));
    assert!(completion.recorded, "the worker recorded the item: {completion:?}");
    let marker = store.item("2024-04-22-mops", "nobody").await.unwrap().expect("the marker");
    assert_eq!(marker.status, props_pipeline::batch::documents::ItemStatus::Failed);

    let logs = process.stop();
    let line = logs.iter().find(|l| l["message"] == "item failed permanently").expect("the worker logged the failure");
    assert_eq!(line["severity"], "WARNING");
    assert!(line["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{line:?}");
    assert_eq!(line["batch_id"], "2024-04-22-mops");
    assert_eq!(line["game_date"], "2024-04-22");
    assert_eq!(line["generation"], 3);
    assert_eq!(line["correlation_id"], "corr-ops");
    assert_eq!(line["item"], "nobody");
    assert_eq!(line["subscription"], channel.subscription.as_str());
    assert_eq!(line["message_id"], request_id.as_str());
    assert!(line["error"].as_str().is_some_and(|e| e.contains("no slate for 2024-04-22")), "{line:?}");
}
