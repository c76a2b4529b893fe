//! The ceiling of the primitives: per item exactly the irreducible work of the pipeline, with no engine
//! around it, at the same concurrency. A request message is published for each item; W streams (as
//! many as worker processes, leasing 2 x concurrency each, `concurrency` handlers each) pull it, read
//! the item's inputs in one `BatchGetDocuments` (the NBA worker's own read), commit its result and its
//! marker in one atomic `Commit`, publish its completion and ack; one more stream (the coordinator's)
//! pulls and acks the completions. Items/s = N / (first request published -> last completion acked).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use firestore::FirestoreDb;
use firestore::gcloud_sdk::google::firestore::v1::{
    CommitRequest, Document, Precondition, Value, Write, precondition::ConditionType, value::ValueType,
    write::Operation,
};
use google_cloud_pubsub::model::Message;
use props_pipeline::gcp::pubsub::PubSub;
use props_pipeline::nba::inputs::worker_inputs;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::pull::{create_topic_and_subscription, publish_and_wait, spawn_acking};

#[derive(Debug, Clone, serde::Serialize)]
pub struct CeilingFigures {
    pub items: usize,
    pub streams: usize,
    pub concurrency: usize,
    pub secs: f64,
    pub items_per_sec: f64,
    /// Items whose read or commit failed (counted as done: the ceiling does not retry).
    pub failed: usize,
}

/// What each item's handler needs.
struct Work {
    db: FirestoreDb,
    pubsub: PubSub,
    completion_topic: String,
    game_date: String,
    collection: String,
    failed: Mutex<usize>,
}

/// Runs the ceiling for `players` (ids on the slate of `game_date`, already loaded). `dbs` are the
/// workers' Firestore clients (one each, as each worker process has its own).
pub async fn measure(
    pubsub: &PubSub,
    dbs: Vec<FirestoreDb>,
    name: &str,
    game_date: &str,
    players: &[String],
    concurrency: usize,
    within: Duration,
) -> anyhow::Result<CeilingFigures> {
    let (requests, completions) = (format!("{name}-requests"), format!("{name}-completions"));
    for topic in [&requests, &completions] {
        create_topic_and_subscription(pubsub, topic).await?;
    }
    let settings = pubsub.settings();
    let stop = CancellationToken::new();
    let items = players.len();
    let streams = dbs.len();

    // The coordinator's side: pull and ack the completions until each item's came once.
    let completed: Arc<Mutex<HashSet<String>>> = Arc::default();
    let all_completed = Arc::new(Notify::new());
    let waiting = Arc::clone(&all_completed);
    let coordinator = {
        let stream = pubsub
            .subscriber
            .subscribe(settings.subscription_path(&completions))
            .set_max_outstanding_messages((concurrency * 2) as i64)
            .build();
        let completed = Arc::clone(&completed);
        spawn_acking(stream, stop.clone(), "ceiling completions", move |message| {
            let mut completed = completed.lock().expect("completed lock");
            completed.insert(String::from_utf8_lossy(&message.data).to_string());
            if completed.len() >= items {
                all_completed.notify_one();
            }
        })
    };

    let mut workers = Vec::new();
    let mut works = Vec::new();
    for (index, db) in dbs.into_iter().enumerate() {
        let work = Arc::new(Work {
            db,
            pubsub: pubsub.clone(),
            completion_topic: completions.clone(),
            game_date: game_date.to_string(),
            collection: format!("{name}-{index}"),
            failed: Mutex::new(0),
        });
        works.push(Arc::clone(&work));
        let stream = pubsub
            .subscriber
            .subscribe(settings.subscription_path(&requests))
            .set_max_outstanding_messages((concurrency * 2) as i64)
            .build();
        workers.push(spawn_worker(stream, work, concurrency, stop.clone()));
    }

    let all_arrived = || completed.lock().expect("completed lock").len() >= items;
    let arrival = publish_and_wait(pubsub, &requests, players.iter().cloned(), &waiting, all_arrived, within).await?;
    let secs = arrival.total_secs;
    stop.cancel();
    for worker in workers {
        let _ = worker.await;
    }
    let _ = coordinator.await;
    let done = completed.lock().expect("completed lock").len();
    anyhow::ensure!(arrival.in_time, "ceiling: only {done} of {items} items completed within {within:?}");
    let failed = works.iter().map(|w| *w.failed.lock().expect("failed lock")).sum();
    Ok(CeilingFigures { items, streams, concurrency, secs, items_per_sec: items as f64 / secs, failed })
}

/// One worker stream: each message handled in a task of its own, at most `concurrency` at once, acked
/// when its work is done (the consumer runtime's shape without its bookkeeping).
fn spawn_worker(
    mut stream: google_cloud_pubsub::subscriber::MessageStream,
    work: Arc<Work>,
    concurrency: usize,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(concurrency));
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            let Ok(permit) = Arc::clone(&slots).acquire_owned().await else { break };
            let next = tokio::select! {
                _ = stop.cancelled() => break,
                next = stream.next() => next,
            };
            match next {
                Some(Ok((message, ack))) => {
                    let work = Arc::clone(&work);
                    tasks.spawn(async move {
                        let player = String::from_utf8_lossy(&message.data).to_string();
                        if let Err(error) = work.handle(&player).await {
                            eprintln!("ceiling: {player}: {error:#}");
                            *work.failed.lock().expect("failed lock") += 1;
                        }
                        ack.ack();
                        drop(permit);
                    });
                }
                Some(Err(error)) => eprintln!("ceiling pull: {error}"),
                None => break,
            }
        }
        while tasks.join_next().await.is_some() {}
        stream.shutdown_token().shutdown().await;
    })
}

impl Work {
    /// The irreducible work of one item: read its inputs, commit its result and marker, announce it.
    async fn handle(&self, player: &str) -> anyhow::Result<()> {
        let inputs = worker_inputs(&self.db, &self.game_date, player).await?;
        let games = inputs.logs.as_ref().map_or(0, |logs| logs.games.len());
        let root = self.db.get_documents_path();
        let result = Document {
            name: format!("{root}/{}/{}/results/{player}", self.collection, self.game_date),
            fields: [
                ("player".to_string(), string(player)),
                // About what a staged prediction holds: a few props' figures.
                ("payload".to_string(), string(&"p".repeat(1024))),
                ("games".to_string(), integer(games as i64)),
            ]
            .into(),
            ..Default::default()
        };
        let marker = Document {
            name: format!("{root}/{}/{}/items/{player}", self.collection, self.game_date),
            fields: [("status".to_string(), string("done")), ("attempts".to_string(), integer(1))].into(),
            ..Default::default()
        };
        let create_only = Precondition { condition_type: Some(ConditionType::Exists(false)) };
        let request = CommitRequest {
            database: self.db.get_database_path().clone(),
            writes: vec![write(result, Some(create_only)), write(marker, None)],
            transaction: Vec::new(),
            request_options: None,
        };
        self.db.client().get().commit(request).await.context("committing the result and marker")?;
        self.pubsub.publish(&self.completion_topic, Message::new().set_data(player.to_string())).await?;
        Ok(())
    }
}

fn write(document: Document, precondition: Option<Precondition>) -> Write {
    Write {
        operation: Some(Operation::Update(document)),
        current_document: precondition,
        update_mask: None,
        update_transforms: Vec::new(),
    }
}

fn string(text: &str) -> Value {
    Value { value_type: Some(ValueType::StringValue(text.to_string())) }
}

fn integer(value: i64) -> Value {
    Value { value_type: Some(ValueType::IntegerValue(value)) }
}
