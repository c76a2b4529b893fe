//! One measured batch: publish a trigger, wait for its ready event and its export, then read what it
//! cost from the Firestore counts and from the batch's own documents.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use google_cloud_pubsub::model::Message;
use props_pipeline::batch::documents::{BATCHES, ITEMS};
use props_pipeline::batch::store::BatchStore;
use props_pipeline::gcp::pubsub::PubSub;
use props_pipeline::messages::{ReadyMessage, TriggerMessage, TriggerMode};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::firestore_count::{Counts, FirestoreCounter, HottestDocument, WireEvent, hottest_document};
use crate::pull::spawn_acking;

/// A ready event as the tap saw it, with the time Pub/Sub accepted it.
pub struct Ready {
    message: ReadyMessage,
    published: SystemTime,
}

/// A subscription of the bench's own on the ready topic, read for as long as the bench runs.
pub struct ReadyTap {
    events: mpsc::UnboundedReceiver<Ready>,
    stop: CancellationToken,
}

impl ReadyTap {
    pub async fn open(pubsub: &PubSub, ready_topic: &str) -> anyhow::Result<Self> {
        let settings = pubsub.settings();
        let name = settings.subscription_path(&format!("{ready_topic}-bench-tap"));
        pubsub
            .subscription_admin
            .create_subscription()
            .set_name(&name)
            .set_topic(settings.topic_path(ready_topic))
            .set_ack_deadline_seconds(10)
            .send()
            .await?;
        let stream = pubsub.subscriber.subscribe(name).build();
        let (sender, events) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        spawn_acking(stream, stop.clone(), "ready tap", move |message| {
            let published = message.publish_time.and_then(|t| SystemTime::try_from(t).ok());
            if let (Ok(ready), Some(published)) = (ReadyMessage::parse(&message.data), published) {
                let _ = sender.send(Ready { message: ready, published });
            }
        });
        Ok(Self { events, stop })
    }

    /// The first ready event of `game_date` within `within`.
    async fn wait_for(&mut self, game_date: &str, within: Duration) -> anyhow::Result<Ready> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(ready)) if ready.message.game_date.to_string() == game_date => return Ok(ready),
                Ok(Some(_)) => continue,
                Ok(None) => bail!("the ready tap stopped"),
                Err(_) => bail!("no ready event for {game_date} within {within:?}"),
            }
        }
    }
}

impl Drop for ReadyTap {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// What one batch cost.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BatchFigures {
    pub game_date: String,
    pub batch_id: String,
    pub items: usize,
    pub state: String,
    pub done: u64,
    pub failed: u64,
    /// Trigger published -> ready event published (Pub/Sub's publish time).
    pub trigger_to_ready_secs: f64,
    pub items_per_sec: f64,
    /// The last completion's commit (the newest item marker's update time) -> ready event published.
    pub finalize_latency_ms: f64,
    /// The header counts its own writes.
    pub header_writes: u64,
    pub counter_shards: usize,
    /// The largest share of the batch's completions counted on one shard document.
    pub max_shard_share: f64,
    /// Firestore traffic per process between the trigger and the export, by process name (counted
    /// runs only).
    pub firestore: BTreeMap<String, Counts>,
    /// The coordinator's Firestore traffic of the finalize step (counted runs only).
    pub finalize: Option<FinalizeWork>,
    /// The most writes one document took in any 10 s of the batch (counted runs only).
    pub hottest_document: Option<HottestDocument>,
}

/// What the finalize step sent and received: the coordinator's requests from the header read that
/// opened the check which finalized the batch ([`finalize_start`]) to the ready event's publish, and
/// their answers.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct FinalizeWork {
    pub requests: u64,
    pub requests_by_method: BTreeMap<String, u64>,
    /// Request and answer bytes (gRPC-framed messages).
    pub bytes: u64,
    pub reads: u64,
}

impl FinalizeWork {
    fn of(events: &[WireEvent], process: &str, after: SystemTime, before: SystemTime) -> Self {
        let mut work = Self::default();
        for event in events.iter().filter(|e| &*e.label == process && e.received >= after && e.received <= before) {
            if let Some(method) = &event.method {
                work.requests += 1;
                *work.requests_by_method.entry(method.clone()).or_default() += 1;
            }
            work.bytes += event.bytes;
            work.reads += event.reads;
        }
        work
    }
}

/// When the finalize step began: the coordinator's header read that opened the check whose `sum`
/// found the batch whole (its last aggregation before the ready event). Checks of one batch run one at
/// a time in the coordinator (`batch::coalesce`), so none other of the batch's is in flight from there
/// to the ready event. That read may come a little before the last item's commit or after it (the
/// check was asked for by an earlier shard's completion, or by the last one's), so a window from the
/// last commit would count the step's first request in some batches and not in others.
fn finalize_start(events: &[WireEvent], process: &str, ready: SystemTime) -> Option<SystemTime> {
    let requests: Vec<(&str, SystemTime)> = events
        .iter()
        .filter(|e| &*e.label == process && e.received <= ready)
        .filter_map(|e| Some((e.method.as_deref()?, e.received)))
        .collect();
    let sum = requests.iter().rposition(|(method, _)| *method == "RunAggregationQuery")?;
    requests[..sum].iter().rev().find(|(method, _)| *method == "GetDocument").map(|(_, at)| *at)
}

/// The window of [`BatchFigures::hottest_document`].
const HOT_WINDOW: Duration = Duration::from_secs(10);

pub struct BatchContext<'a> {
    pub pubsub: &'a PubSub,
    pub store: &'a BatchStore,
    pub trigger_topic: &'a str,
    pub export_dir: &'a Path,
    /// Set for a counted run.
    pub counter: Option<&'a FirestoreCounter>,
}

pub async fn run_batch(
    context: &BatchContext<'_>,
    tap: &mut ReadyTap,
    game_date: &str,
    items: usize,
    within: Duration,
) -> anyhow::Result<BatchFigures> {
    let (before, mark) = context.counter.map(FirestoreCounter::snapshot).unwrap_or_default();
    let trigger = TriggerMessage::new(game_date, TriggerMode::default(), "benchmark".into(), None, String::new())?;
    let triggered = SystemTime::now();
    context.pubsub.publish(context.trigger_topic, Message::new().set_data(trigger.to_json())).await?;
    let ready = tap.wait_for(game_date, within).await?;
    // The exporter's reads and writes belong to the batch's cost: count until its file is in place.
    let export = context.export_dir.join(format!("{game_date}.json"));
    let waited = Instant::now();
    while !export.exists() {
        anyhow::ensure!(waited.elapsed() < within, "no export {} within {within:?}", export.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The export record is written just after the file.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (after, _) = context.counter.map(FirestoreCounter::snapshot).unwrap_or_default();
    let (events, writes) = context.counter.map(|c| c.since(mark)).unwrap_or_default();

    let batch_id = ready.message.batch_id.clone();
    let header = context.store.header(&batch_id).await?.with_context(|| format!("no header for {batch_id}"))?;
    let last_completion = last_marker_update(context.store, &batch_id).await?;
    let shards = context.store.shards(&batch_id).await?;
    let per_shard: Vec<u64> = shards.iter().map(|s| s.done + s.failed).collect();
    let completions: u64 = per_shard.iter().sum();
    let trigger_to_ready_secs = seconds_between(triggered, ready.published);
    let finalize = context.counter.map(|_| {
        let start = finalize_start(&events, "coordinator", ready.published).unwrap_or(last_completion);
        FinalizeWork::of(&events, "coordinator", start, ready.published)
    });
    let hottest_document = context.counter.map(|_| hottest_document(&writes, HOT_WINDOW));
    Ok(BatchFigures {
        game_date: game_date.to_string(),
        batch_id,
        items,
        state: format!("{:?}", header.state),
        done: header.done_count.unwrap_or(0),
        failed: header.failed_count.unwrap_or(0),
        trigger_to_ready_secs,
        items_per_sec: items as f64 / trigger_to_ready_secs,
        finalize_latency_ms: seconds_between(last_completion, ready.published) * 1000.0,
        header_writes: header.header_writes,
        counter_shards: shards.len(),
        max_shard_share: per_shard.iter().max().copied().unwrap_or(0) as f64 / completions.max(1) as f64,
        firestore: after
            .iter()
            .map(|(name, counts)| (name.clone(), counts.since(&before.get(name).cloned().unwrap_or_default())))
            .collect(),
        finalize,
        hottest_document,
    })
}

/// The newest update time among the batch's item markers: the commit of its last completion (markers
/// are written when the batch begins and by each item's completion, never after).
async fn last_marker_update(store: &BatchStore, batch_id: &str) -> anyhow::Result<SystemTime> {
    let db = store.db();
    let parent = db.parent_path(BATCHES, batch_id)?;
    let markers = db.fluent().select().from(ITEMS).parent(parent).query().await?;
    markers
        .iter()
        .filter_map(|doc| doc.update_time.as_ref())
        .map(|t| SystemTime::UNIX_EPOCH + Duration::new(t.seconds as u64, t.nanos as u32))
        .max()
        .with_context(|| format!("batch {batch_id} has no item markers"))
}

/// `later - earlier` in seconds, negative when the clocks say so (both are this machine's clock).
fn seconds_between(earlier: SystemTime, later: SystemTime) -> f64 {
    match later.duration_since(earlier) {
        Ok(elapsed) => elapsed.as_secs_f64(),
        Err(error) => -error.duration().as_secs_f64(),
    }
}
