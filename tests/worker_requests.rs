//! A worker costs two Firestore requests per item: one `BatchGetDocuments` (the item's marker and the
//! NBA worker's three inputs together) and one `Commit` (the marker with its result, and the counter
//! shard). Counted on the wire, through a pass-through proxy (`crates/grpc-faults` with no faults)
//! between the worker and the Firestore emulator, on a real slate.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::nba::NbaEnv;
use props_pipeline::batch::documents::{ItemStatus, batch_id_for};
use props_pipeline::batch::engine::BatchEngine;
use props_pipeline::batch::roles::{WorkerReport, WorkerRole};
use props_pipeline::batch::settings::EngineSettings;
use props_pipeline::batch::store::BatchStore;
use props_pipeline::messages::{RequestMessage, TriggerMessage, TriggerMode};
use props_pipeline::nba::domain::{NbaDomain, NbaWorker};
use props_pipeline::nba::model::ModelConfig;
use props_pipeline::nba::types::PlayerPrediction;

const DATE: &str = "2023-05-02";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_reads_once_and_commits_once_per_item() {
    let nba = NbaEnv::new("worker-requests", &[DATE]).await;
    let engine = BatchEngine::new(
        nba.store.clone(),
        nba.env.pubsub.clone(),
        nba.env.topics.clone(),
        Arc::new(NbaDomain::new(nba.store.clone())),
        EngineSettings::default(),
    );
    let trigger = TriggerMessage::new(DATE, TriggerMode::Start, "test".into(), None, String::new()).unwrap();
    engine.start(&trigger, "t1").await.expect("start the batch");
    let header = nba.store.header(&batch_id_for(DATE, "t1")).await.unwrap().expect("the batch exists");
    let items = nba.store.items_in(&header.batch_id, ItemStatus::Pending).await.unwrap();
    assert!(items.len() >= 10, "the slate has players: {items:?}");

    let proxy = common::firestore_proxy();
    let store = BatchStore::new(nba.env.firestore_through(&proxy, "worker").await);
    let handler = Arc::new(NbaWorker::new(store.clone(), ModelConfig::default()));
    let worker = WorkerRole::new(handler, store, nba.env.pubsub.clone(), nba.env.topics.completion_topic.clone());
    let request = |item: &String| RequestMessage {
        batch_id: header.batch_id.clone(),
        generation: header.generation,
        game_date: DATE.parse().unwrap(),
        item: item.clone(),
        correlation_id: String::new(),
    };
    let mut seen = BTreeMap::new();
    let n = items.len() as u64;

    for item in &items {
        let report = worker.record(&request(item)).await.expect("record the item");
        assert!(matches!(&report, WorkerReport::Recorded(c) if c.recorded), "{item}: {report:?}");
    }
    let first = common::requests_since(&proxy, &mut seen);
    let done = nba.store.totals(&header.batch_id).await.unwrap();
    assert_eq!(done.terminal(), n, "every item recorded");
    assert!(done.done > 0, "the model priced players from the inputs it was given: {done:?}");
    let expected: BTreeMap<String, u64> = [("BatchGetDocuments".to_string(), n), ("Commit".to_string(), n)].into();
    assert_eq!(first, expected, "one read and one commit per item");
    // Each done item's result is in its marker: no result document of its own was written.
    let results: Vec<(String, PlayerPrediction)> = nba.store.results(&header.batch_id).await.unwrap();
    assert_eq!(results.len() as u64, done.done, "one result per done item");
    assert!(results.iter().all(|(item, prediction)| *item == prediction.player_lookup), "{results:?}");
    let batch = nba.store.db().parent_path("batches", &header.batch_id).unwrap();
    let own = nba.store.db().fluent().select().from("results").parent(&batch).query().await.unwrap();
    assert!(own.is_empty(), "results in documents of their own: {}", own.len());

    // A redelivery of a recorded item reads once and writes nothing.
    for item in &items {
        let report = worker.record(&request(item)).await.expect("record the item again");
        assert!(matches!(&report, WorkerReport::Duplicate(c) if c.recorded), "{item}: {report:?}");
    }
    let again = common::requests_since(&proxy, &mut seen);
    assert_eq!(again, [("BatchGetDocuments".to_string(), n)].into(), "a duplicate costs one read");

    // An item the batch does not have: one read, rejected.
    let unknown = worker.record(&request(&"nobodyatall".to_string())).await.expect("read");
    assert_eq!(unknown, WorkerReport::UnknownItem);
    proxy.stop();
    nba.stop().await;
}
