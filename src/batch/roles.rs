//! The engine's message handlers: how each role turns a delivery into an [`Outcome`] for the consumer
//! runtime. Parsing failures are rejected (dead-lettered with the reason); transient failures retry.
//!
//! Once a message is parsed, its handling runs in a `batch` span carrying what the message names of
//! `batch_id`, `game_date`, `generation`, `correlation_id` and `item`, so every log line it causes
//! (JSON logs flatten span fields) can be found by batch.

use std::sync::Arc;

use google_cloud_pubsub::model::Message;
use tracing::Instrument;

use super::audit::AuditRecord;
use super::documents::batch_id_for;
use super::domain::{BatchDomain, ItemHandler, ItemOutcome};
use super::engine::{BatchEngine, EngineError, TriggerReport};
use super::state::reannouncement;
use super::store::{BatchStore, ItemRecord, StoreError};
use crate::consumer::{Delivery, MessageHandler, Outcome};
use crate::gcp::pubsub::PubSub;
use crate::messages::{CompletionMessage, RequestMessage, TriggerMessage};

/// Maps an engine result to the message's fate.
fn outcome_of<T: std::fmt::Debug>(result: Result<T, EngineError>) -> Outcome {
    match result {
        Ok(report) => {
            tracing::debug!(?report, "handled");
            Outcome::Ack
        }
        Err(error) if error.is_transient() => {
            tracing::warn!(%error, "transient failure; the message will be redelivered");
            Outcome::Retry(error.to_string())
        }
        Err(error) => Outcome::Reject(error.to_string()),
    }
}

/// Coordinator: `prediction-trigger-coordinator`. Every trigger ends with an audit record: the engine
/// writes it with its decision, and a trigger rejected before any batch exists is recorded here.
pub struct TriggerRole<D>(pub Arc<BatchEngine<D>>);

impl<D: BatchDomain> MessageHandler for TriggerRole<D> {
    async fn handle(&self, delivery: &Delivery) -> Outcome {
        let trigger = match TriggerMessage::parse(&delivery.data) {
            Ok(trigger) => trigger,
            Err(invalid) => return self.reject(delivery, invalid.to_string()).await,
        };
        let date = trigger.game_date.to_string();
        // The engine falls back to the message id for an empty correlation id, and keys the batch by it.
        let correlation_id = if trigger.correlation_id.is_empty() {
            delivery.message_id.as_str()
        } else {
            trigger.correlation_id.as_str()
        };
        let span = tracing::info_span!(
            "batch",
            batch_id = batch_id_for(&date, &delivery.message_id),
            game_date = date,
            correlation_id,
            generation = tracing::field::Empty,
        );
        async {
            let result = self.0.start(&trigger, &delivery.message_id).await;
            if let Ok(TriggerReport::Started { generation, .. }) = &result {
                tracing::Span::current().record("generation", generation);
            }
            match outcome_of(result) {
                Outcome::Reject(reason) => self.reject(delivery, reason).await,
                other => other,
            }
        }
        .instrument(span)
        .await
    }
}

impl<D: BatchDomain> TriggerRole<D> {
    /// Records the rejection, then rejects; if the record cannot be written yet, the trigger is retried
    /// so that it is not dead-lettered unrecorded (past the maximum attempts Pub/Sub dead-letters it).
    async fn reject(&self, delivery: &Delivery, reason: String) -> Outcome {
        let record = AuditRecord::rejected(&delivery.data, &delivery.message_id, &reason);
        match self.0.store().record_rejected(&record).await {
            Ok(_) => Outcome::Reject(reason),
            Err(error) if error.is_transient() => {
                Outcome::Retry(format!("could not audit a rejected trigger: {error}"))
            }
            Err(error) => {
                tracing::error!(%error, message_id = delivery.message_id, "could not audit a rejected trigger");
                Outcome::Reject(reason)
            }
        }
    }
}

/// Coordinator: `prediction-completions-coordinator`.
pub struct CompletionRole<D>(pub Arc<BatchEngine<D>>);

impl<D: BatchDomain> MessageHandler for CompletionRole<D> {
    async fn handle(&self, delivery: &Delivery) -> Outcome {
        let completion = match CompletionMessage::parse(&delivery.data) {
            Ok(completion) => completion,
            Err(invalid) => return Outcome::Reject(invalid.to_string()),
        };
        let span = tracing::info_span!(
            "batch",
            batch_id = completion.batch_id,
            generation = completion.generation,
            item = completion.item,
        );
        outcome_of(self.0.complete(&completion).instrument(span).await)
    }
}

/// Worker: `prediction-requests-worker`. Reads the item's marker and the domain's inputs in one
/// request, computes the item (unless it is terminal already), records it (result, marker and shard
/// count in one guarded commit), then announces it; the request is acked only after the announcement
/// is published.
pub struct WorkerRole<H> {
    handler: Arc<H>,
    store: BatchStore,
    pubsub: PubSub,
    completion_topic: String,
}

/// What one delivery of a request came to at the worker.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkerReport {
    /// This delivery recorded the item; the announcement to publish.
    Recorded(CompletionMessage),
    /// The item was terminal already: found so before the work, or a twin's commit won the race
    /// (this one's failed its precondition at once). The re-announcement to publish.
    Duplicate(CompletionMessage),
    /// The domain asks for another try.
    Retry(String),
    /// The batch has no marker for this item (never had, or was deleted).
    UnknownItem,
}

impl<H: ItemHandler> WorkerRole<H> {
    pub fn new(handler: Arc<H>, store: BatchStore, pubsub: PubSub, completion_topic: String) -> Self {
        Self { handler, store, pubsub, completion_topic }
    }

    /// Reads, works, records: everything a delivery does but the announcement.
    pub async fn record(&self, request: &RequestMessage) -> Result<WorkerReport, StoreError> {
        // One read: the marker (with the version the record is guarded by) and what the item needs.
        let names = self.handler.input_documents(request);
        let Some((read, inputs)) = self.store.item_with_inputs(&request.batch_id, &request.item, names).await? else {
            return Ok(WorkerReport::UnknownItem);
        };
        if let Some(again) = reannouncement(&read.0, request) {
            tracing::debug!("item terminal already; announcing it again without working");
            return Ok(WorkerReport::Duplicate(again));
        }
        let (completion, result) = match self.handler.handle_item(request, &inputs).await {
            ItemOutcome::Done { result, results_count } => {
                tracing::debug!(results_count, "item done");
                (CompletionMessage::ok(request, results_count), Some(result))
            }
            ItemOutcome::Failed(error) => {
                // batch_id and item come from the span.
                tracing::warn!(error, "item failed permanently");
                (CompletionMessage::failed(request, &error), None)
            }
            ItemOutcome::Skipped(reason) => {
                tracing::info!(reason, "item skipped");
                (CompletionMessage::skipped(request, &reason), None)
            }
            ItemOutcome::Retry(reason) => return Ok(WorkerReport::Retry(reason)),
        };
        let counter_shards = match read.0.shard {
            Some(_) => 0, // unused: the marker names its shard
            // A marker written before markers named their shard: the header has the shard count.
            None => match self.store.header(&request.batch_id).await? {
                Some(header) => header.counter_shards,
                None => return Ok(WorkerReport::UnknownItem),
            },
        };
        Ok(match self.store.record_item_result(&completion, result.as_ref(), read, counter_shards).await? {
            ItemRecord::Recorded { shard_remaining } => WorkerReport::Recorded(completion.announced(shard_remaining)),
            ItemRecord::Duplicate(marker) => match reannouncement(&marker, request) {
                Some(again) => WorkerReport::Duplicate(again),
                None => WorkerReport::Retry("item marker pending after a lost race".into()),
            },
            ItemRecord::UnknownItem => WorkerReport::UnknownItem,
        })
    }
}

impl<H: ItemHandler> MessageHandler for WorkerRole<H> {
    async fn handle(&self, delivery: &Delivery) -> Outcome {
        let request = match RequestMessage::parse(&delivery.data) {
            Ok(request) => request,
            Err(invalid) => return Outcome::Reject(invalid.to_string()),
        };
        let span = tracing::info_span!(
            "batch",
            batch_id = request.batch_id,
            game_date = %request.game_date,
            generation = request.generation,
            correlation_id = request.correlation_id,
            item = request.item,
        );
        self.handle_request(&request).instrument(span).await
    }
}

impl<H: ItemHandler> WorkerRole<H> {
    async fn handle_request(&self, request: &RequestMessage) -> Outcome {
        let announcement = match self.record(request).await {
            Ok(WorkerReport::Recorded(announcement) | WorkerReport::Duplicate(announcement)) => announcement,
            Ok(WorkerReport::Retry(reason)) => return Outcome::Retry(reason),
            Ok(WorkerReport::UnknownItem) => {
                return Outcome::Reject(format!("batch {} has no item {}", request.batch_id, request.item));
            }
            // A commit whose answer was lost may have been applied: the redelivery reads the marker
            // and finds its own effect (then announces it without working again).
            Err(error) if error.is_transient() => {
                tracing::warn!(%error, "could not record the item; the request will be redelivered");
                return Outcome::Retry(error.to_string());
            }
            Err(error) => return Outcome::Reject(format!("could not record the item: {error}")),
        };
        match self.pubsub.publish(&self.completion_topic, Message::new().set_data(announcement.to_json())).await {
            Ok(_) => Outcome::Ack,
            Err(error) => Outcome::Retry(format!("could not publish the completion: {error}")),
        }
    }
}
