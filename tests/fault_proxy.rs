//! The gRPC fault injector (`crates/grpc-faults`) in front of the real emulators, each fault kind as
//! the real client crates see it: an error code without the server seeing the call, a write the
//! server applied whose answer the client never got, a delay, an outage, and REST passing through.

mod common;

use std::time::Duration;

use common::TestEnv;
use firestore::FirestoreDb;
use grpc_faults::{Fault, FaultKind, FaultProxy, Plan, Rule};
use props_pipeline::config::GcpSettings;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Doc {
    value: String,
}

fn firestore_upstream() -> String {
    std::env::var("FIRESTORE_EMULATOR_HOST").expect("FIRESTORE_EMULATOR_HOST (make test sets it)")
}

async fn write(db: &FirestoreDb, id: &str, value: &str) -> Result<Doc, firestore::errors::FirestoreError> {
    db.fluent().update().in_col("docs").document_id(id).object(&Doc { value: value.into() }).execute::<Doc>().await
}

async fn read(db: &FirestoreDb, id: &str) -> Result<Option<Doc>, firestore::errors::FirestoreError> {
    db.fluent().select().by_id_in("docs").obj().one(id).await
}

#[tokio::test]
async fn each_error_code_reaches_the_firestore_client_without_reaching_the_server() {
    let env = TestEnv::new("faultcodes").await;
    let direct = env.firestore().await;
    let proxy = FaultProxy::new(&firestore_upstream(), Plan::none());
    let db = env.firestore_through(&proxy, "client").await;
    write(&db, "seen", "before").await.expect("no fault: the write goes through");

    for (kind, code) in [
        (FaultKind::Unavailable, "Unavailable"),
        (FaultKind::Internal, "Internal"),
        (FaultKind::DeadlineExceeded, "DeadlineExceeded"),
        (FaultKind::ResourceExhausted, "ResourceExhausted"),
    ] {
        proxy.set_plan(Plan::always(kind));
        let error = write(&db, "seen", kind.name()).await.expect_err("every call is faulted");
        assert!(format!("{error:?}").contains(code), "{kind}: the client sees {code}: {error:?}");
        proxy.set_plan(Plan::none());
        let stored = read(&direct, "seen").await.unwrap().expect("the document");
        assert_eq!(stored.value, "before", "{kind}: the server never saw the write");
    }
    let kinds: Vec<FaultKind> = proxy.injected().iter().map(|i| i.kind).collect();
    for kind in [FaultKind::Unavailable, FaultKind::Internal, FaultKind::DeadlineExceeded, FaultKind::ResourceExhausted]
    {
        assert!(kinds.contains(&kind), "{kind} is in the injection log: {kinds:?}");
    }
}

#[tokio::test]
async fn a_lost_answer_hides_a_write_the_server_applied() {
    let env = TestEnv::new("faultlost").await;
    let direct = env.firestore().await;
    let proxy = FaultProxy::new(&firestore_upstream(), Plan::none());
    let db = env.firestore_through(&proxy, "client").await;

    proxy.set_plan(Plan::always(FaultKind::LostAnswer));
    let error = write(&db, "lost", "applied").await.expect_err("the client gets no answer");
    assert!(format!("{error:?}").contains("Unavailable"), "{error:?}");
    proxy.set_plan(Plan::none());
    let stored = read(&direct, "lost").await.unwrap();
    assert_eq!(stored, Some(Doc { value: "applied".into() }), "the server applied the write");
    assert!(proxy.injected().iter().all(|i| i.kind == FaultKind::LostAnswer && i.label == "client"));
}

#[tokio::test]
async fn a_rule_faults_only_the_calls_it_matches() {
    let env = TestEnv::new("faultrule").await;
    let direct = env.firestore().await;
    let proxy = FaultProxy::new(&firestore_upstream(), Plan::none());
    let db = env.firestore_through(&proxy, "client").await;
    write(&db, "a", "first").await.expect("warm up");
    let methods: Vec<String> = proxy.calls().into_keys().map(|(_, method)| method).collect();
    assert_eq!(methods.len(), 1, "one write, one method: {methods:?}");
    let method = &methods[0];

    proxy.add_rule(Rule::new(method, Fault::new(FaultKind::LostAnswer)).body_contains(&["docs/b"]));
    write(&db, "a", "second").await.expect("another document's write is not matched");
    assert!(write(&db, "b", "x").await.is_err(), "the matched write loses its answer");
    assert_eq!(proxy.rules_armed(), 0, "a rule fires as many times as it was armed");
    write(&db, "b", "y").await.expect("the rule is spent");
    assert_eq!(read(&direct, "a").await.unwrap().unwrap().value, "second");
    assert_eq!(read(&direct, "b").await.unwrap().unwrap().value, "y");
    assert_eq!(proxy.injected().len(), 1, "{:?}", proxy.injected());
}

#[tokio::test]
async fn latency_delays_a_call_that_then_succeeds() {
    let env = TestEnv::new("faultlatency").await;
    let proxy = FaultProxy::new(&firestore_upstream(), Plan::none());
    let db = env.firestore_through(&proxy, "client").await;
    let mut plan = Plan::always(FaultKind::Latency);
    plan.latency = (Duration::from_millis(400), Duration::from_millis(400));
    proxy.set_plan(plan);
    let started = std::time::Instant::now();
    write(&db, "slow", "late").await.expect("a delayed call still succeeds");
    assert!(started.elapsed() >= Duration::from_millis(400), "the call waited its delay");
    assert_eq!(read(&db, "slow").await.unwrap().unwrap().value, "late");
    let injected = proxy.injected();
    assert!(!injected.is_empty() && injected.iter().all(|i| i.kind == FaultKind::Latency));
}

#[tokio::test]
async fn an_outage_holds_every_call_until_it_ends() {
    let env = TestEnv::new("faultfreeze").await;
    let proxy = FaultProxy::new(&firestore_upstream(), Plan::none());
    let db = env.firestore_through(&proxy, "client").await;
    write(&db, "frozen", "before").await.expect("no outage yet");
    proxy.freeze(Duration::from_secs(8));
    let during = tokio::time::timeout(Duration::from_secs(2), write(&db, "frozen", "during")).await;
    assert!(during.is_err(), "no answer during the outage: {during:?}");
    while proxy.is_frozen() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    write(&db, "frozen", "after").await.expect("the outage is over");
    assert_eq!(read(&db, "frozen").await.unwrap().unwrap().value, "after");
}

#[tokio::test]
async fn pubsub_publishes_and_pulls_through_faults() {
    let env = TestEnv::new("faultpubsub").await;
    let topic = "faulted";
    env.pubsub.topic_admin.create_topic().set_name(env.gcp.topic_path(topic)).send().await.expect("topic");
    let subscription = env.create_subscription("faulted-sub", topic).await;
    let upstream = std::env::var("PUBSUB_EMULATOR_HOST").expect("PUBSUB_EMULATOR_HOST");
    let proxy = FaultProxy::new(&upstream, Plan::none());
    let address = proxy.listen("publisher").await.unwrap();
    let settings = GcpSettings::new(env.gcp.project.clone(), Some(address.to_string()), None);
    let pubsub = props_pipeline::gcp::pubsub::PubSub::connect(&settings).await.unwrap();

    // The first publish call answers INTERNAL without reaching the server, the second loses its
    // answer after the server stored the message: whatever the client does about it, the message
    // is stored at least once and nothing else is.
    proxy.add_rule(Rule::new("Publish", Fault::new(FaultKind::Internal)));
    let refused = pubsub.publish(topic, google_cloud_pubsub::model::Message::new().set_data("refused")).await;
    proxy.add_rule(Rule::new("Publish", Fault::new(FaultKind::LostAnswer)));
    let lost = pubsub.publish(topic, google_cloud_pubsub::model::Message::new().set_data("lost")).await;
    let received = env.pull(&subscription, 10, Duration::from_secs(5)).await;
    let texts: Vec<String> = received.iter().map(|r| r.text()).collect();
    let kinds: Vec<FaultKind> = proxy.injected().iter().map(|i| i.kind).collect();
    assert_eq!(kinds, [FaultKind::Internal, FaultKind::LostAnswer], "both injected, in order");
    assert!(texts.iter().any(|t| t == "lost"), "the lost answer's message was stored: {texts:?} ({lost:?})");
    let refused_stored = texts.iter().filter(|t| *t == "refused").count();
    assert_eq!(refused_stored > 0, refused.is_ok(), "INTERNAL: stored only if the client retried: {texts:?}");
}

#[tokio::test]
async fn rest_passes_through_untouched() {
    let proxy = FaultProxy::new(&firestore_upstream(), Plan::always(FaultKind::Unavailable));
    let address = proxy.listen("rest").await.unwrap();
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "the emulator's own answer: {answer}");
    assert!(proxy.injected().is_empty(), "REST is never faulted");
}
