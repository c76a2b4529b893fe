//! The NBA domain end to end on the real emulators: real game logs loaded, a real playoff date run
//! through every role, the export checked against Firestore; then the date regenerated.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::nba::{data_dir, exported, final_header};
use common::{TestEnv, fast_retry_policy};
use props_pipeline::batch::documents::batch_id_for;
use props_pipeline::batch::engine::BatchEngine;
use props_pipeline::batch::settings::EngineSettings;
use props_pipeline::batch::state::BatchState;
use props_pipeline::batch::store::BatchStore;
use props_pipeline::config::ConsumerSettings;
use props_pipeline::messages::{TriggerMessage, TriggerMode};
use props_pipeline::nba::data::load_logs;
use props_pipeline::nba::domain::{NbaDomain, NbaWorker};
use props_pipeline::nba::export::{ExportRole, Exporter};
use props_pipeline::nba::load::load;
use props_pipeline::nba::model::ModelConfig;
use props_pipeline::nba::store::{batch_predictions, current_predictions, export_record, published_batch};
use props_pipeline::runner::{Role, Roles};
use tokio_util::sync::CancellationToken;

const DATE: &str = "2023-05-02";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_real_playoff_date_runs_end_to_end_and_regenerates() {
    let env = TestEnv::new("nba-e2e").await;
    env.setup(&fast_retry_policy(10)).await;
    let db = env.firestore().await;
    let store = BatchStore::new(db.clone());
    let logs = load_logs(&data_dir(), false, &mut |_| {}).expect("the real game logs load").logs;
    load(&db, &logs, &[DATE.parse().unwrap()], &mut |_| {}).await.expect("load into Firestore");

    let export_dir = std::env::temp_dir().join(format!("props-e2e-{}", rand::random::<u32>()));
    let engine = BatchEngine::new(
        store.clone(),
        env.pubsub.clone(),
        env.topics.clone(),
        Arc::new(NbaDomain::new(store.clone())),
        EngineSettings::default(),
    );
    let roles = Roles {
        pubsub: env.pubsub.clone(),
        topology: env.topology.clone(),
        consumer: ConsumerSettings { concurrency: 8, shutdown_grace_secs: 5, ..Default::default() },
        engine: Arc::new(engine),
        item_handler: Arc::new(NbaWorker::new(store.clone(), ModelConfig::default())),
        exporter: Arc::new(ExportRole(Exporter::new(db.clone(), export_dir.clone()))),
        completion_topic: env.topics.completion_topic.clone(),
        sweep: Default::default(),
    };
    let shutdown = CancellationToken::new();
    let running = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move { roles.run(&Role::ALL, shutdown).await.expect("roles run") })
    };

    // Generation 1.
    let trigger = TriggerMessage::new(DATE, TriggerMode::Start, "e2e".into(), None, String::new()).unwrap();
    let message_id = env.publish(&env.topics.trigger_topic, trigger.to_json(), &[]).await;
    let first = final_header(&store, &batch_id_for(DATE, &message_id)).await;
    assert_eq!(first.state, BatchState::Complete, "{first:?}");
    assert_eq!(first.expected_count, 37, "37 players played on {DATE} after earlier playoff games");
    assert_eq!(first.done_count.unwrap() + first.failed_count.unwrap() + first.skipped_count.unwrap(), 37);
    assert!(first.done_count.unwrap() >= 30, "most players have enough history: {first:?}");

    let path = export_dir.join(format!("{DATE}.json"));
    let file = exported(&path, 1, Duration::from_secs(60)).await;
    let current = current_predictions(&db, DATE).await.unwrap();
    assert_eq!(current.len() as u64, first.done_count.unwrap());
    let in_firestore: BTreeSet<_> = current.iter().map(|p| p.prediction.player_lookup.clone()).collect();
    let in_file: BTreeSet<_> = file.players.iter().map(|p| p.player_lookup.clone()).collect();
    assert_eq!(in_file, in_firestore, "the export holds exactly the current predictions");
    assert_eq!(file.batch_id, first.batch_id);
    assert!(file.players.iter().all(|p| p.props.len() == 4 && p.props.iter().all(|q| (0.0..=1.0).contains(&q.p_over))));
    let record = export_record(&db, DATE).await.unwrap().expect("export recorded");
    assert_eq!((record.generation, record.players), (1, file.players.len() as u64));

    // Generation 2 replaces it.
    let regenerate =
        TriggerMessage::new(DATE, TriggerMode::RegenerateWithSupersede, "e2e regen".into(), None, String::new())
            .unwrap();
    let message_id = env.publish(&env.topics.trigger_topic, regenerate.to_json(), &[]).await;
    let second = final_header(&store, &batch_id_for(DATE, &message_id)).await;
    assert_eq!((second.state, second.generation), (BatchState::Complete, 2));
    let file = exported(&path, 2, Duration::from_secs(60)).await;
    assert_eq!(file.batch_id, second.batch_id);
    let current = current_predictions(&db, DATE).await.unwrap();
    assert!(current.iter().all(|p| p.generation == 2 && p.batch_id == second.batch_id));
    assert_eq!(published_batch(&db, DATE).await.unwrap(), Some((second.batch_id.clone(), 2)), "the pointer flipped");
    // Generation 1 was not copied or changed: its predictions are still where its workers wrote them.
    let older = batch_predictions(&db, &first.batch_id, 1).await.unwrap();
    assert_eq!(older.len() as u64, first.done_count.unwrap(), "every generation-1 prediction is kept");
    assert_eq!(store.header(&first.batch_id).await.unwrap().map(|h| h.state), Some(BatchState::Complete));
    assert_eq!(export_record(&db, DATE).await.unwrap().map(|r| r.generation), Some(2));

    shutdown.cancel();
    running.await.unwrap();
    std::fs::remove_dir_all(&export_dir).ok();
}
