//! The dead-letter role: consumes every `<topic>-dead-letter` subscription, so nothing that reached a
//! dead-letter topic is silently dropped.
//!
//! - A request rejected by a handler (its permanent verdict) marks its item failed with the reason,
//!   by the same guarded commit a worker records an item with (marker and shard count, no result), so
//!   a result exists only for a done item, and the batch can still finish. A request that only ran out
//!   of delivery attempts (an outage longer than its backoff, killed workers) is not the item's fault:
//!   it is published again, counted against the item's redrive cap (`PROPS_MAX_ITEM_REDRIVES`), and
//!   only at the cap does the item fail.
//! - A ready event that ran out of delivery attempts without the exporter's verdict is announced
//!   again (its batch's recorded ready event is forgotten and published anew), if the batch is still
//!   the date's current one; the exporter is idempotent.
//! - A completion is applied once more (it may have run out of attempts behind a live finalize claim):
//!   one of the older shape is recorded (idempotent), a worker's announcement checks wholeness if its
//!   shard may have emptied; it never fails an item for a completion or claim problem.
//! - Every dead letter is recorded in `dead_letters/{id}` (create-once) with its reason, data and
//!   source subscription, for operators.

use std::collections::HashMap;
use std::sync::Arc;

use firestore::{FirestoreInstant, FirestoreWritePrecondition};
use serde::{Deserialize, Serialize};

use super::documents::DEAD_LETTERS;
use super::domain::BatchDomain;
use super::engine::{BatchEngine, CompletionReport, EngineError};
use super::redrive::ItemRedriveReport;
use super::store::{BatchStore, StoreError, firestore_error};
use crate::consumer::{
    DELIVERY_ATTEMPT, Delivery, MessageHandler, ORIGINAL_MESSAGE_ID, Outcome, REJECT_REASON, SOURCE_SUBSCRIPTION,
};
use crate::messages::{CompletionMessage, ReadyMessage, RequestMessage};
use crate::ops::metrics::DEAD_LETTERS_RECORDED_TOTAL;
use crate::topology::ChannelKind;

/// Attributes Pub/Sub adds when its dead-letter policy forwards a message.
const PUBSUB_DELIVERY_COUNT: &str = "CloudPubSubDeadLetterSourceDeliveryCount";
const PUBSUB_SOURCE_SUBSCRIPTION: &str = "CloudPubSubDeadLetterSourceSubscription";

/// Longest data kept in a record (the pipeline's own messages are at most 64 KiB; Firestore documents
/// at most 1 MiB).
const MAX_RECORDED_DATA_BYTES: usize = 64 * 1024;

/// `dead_letters/{id}`: one message that reached a dead-letter topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetterRecord {
    /// trigger, request, completion or ready.
    pub channel: String,
    pub source_subscription: String,
    pub original_message_id: String,
    pub reason: String,
    /// Delivery attempts before it was dead-lettered, when known.
    #[serde(default)]
    pub delivery_attempts: Option<u64>,
    /// The message body as text (lossy for non-UTF-8), at most 64 KiB.
    pub data: String,
    #[serde(default)]
    pub data_truncated: bool,
    pub attributes_json: String,
    /// What the dead-letter role did about it.
    pub action: String,
    #[serde(with = "firestore::serialize_as_timestamp")]
    pub recorded_at: FirestoreInstant,
}

impl DeadLetterRecord {
    /// The record of `delivery`, a message read from the dead-letter subscription of `channel`.
    pub fn of(channel: ChannelKind, delivery: &Delivery) -> Self {
        let attribute = |name: &str| delivery.attributes.get(name).cloned();
        let delivery_attempts = attribute(PUBSUB_DELIVERY_COUNT)
            .or_else(|| attribute(DELIVERY_ATTEMPT))
            .and_then(|count| count.parse().ok());
        let source_subscription = attribute(SOURCE_SUBSCRIPTION)
            .or_else(|| attribute(PUBSUB_SOURCE_SUBSCRIPTION))
            .map(|path| path.rsplit('/').next().unwrap_or_default().to_string())
            .unwrap_or_default();
        let reason = attribute(REJECT_REASON).unwrap_or_else(|| match delivery_attempts {
            Some(count) => format!("not acknowledged after {count} delivery attempts"),
            None => "not acknowledged within the subscription's delivery attempts".to_string(),
        });
        let kept = &delivery.data[..delivery.data.len().min(MAX_RECORDED_DATA_BYTES)];
        let attributes: HashMap<&String, &String> = delivery.attributes.iter().collect();
        Self {
            channel: channel_name(channel).to_string(),
            source_subscription,
            // A copy published by the runtime names its original; one forwarded by Pub/Sub is recorded
            // under its own (stable across redeliveries) id.
            original_message_id: attribute(ORIGINAL_MESSAGE_ID).unwrap_or_else(|| delivery.message_id.clone()),
            reason,
            delivery_attempts,
            data: String::from_utf8_lossy(kept).into_owned(),
            data_truncated: kept.len() < delivery.data.len(),
            attributes_json: serde_json::to_string(&attributes).unwrap_or_default(),
            action: String::new(),
            recorded_at: FirestoreInstant::now(),
        }
    }

    /// The document id: the same message dead-lettered twice is recorded once.
    pub fn id(&self) -> String {
        let safe = |text: &str| -> String {
            text.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
        };
        format!("{}-{}-{}", self.channel, safe(&self.source_subscription), safe(&self.original_message_id))
    }
}

fn channel_name(channel: ChannelKind) -> &'static str {
    match channel {
        ChannelKind::Trigger => "trigger",
        ChannelKind::Request => "request",
        ChannelKind::Completion => "completion",
        ChannelKind::Ready => "ready",
    }
}

impl BatchStore {
    /// Records a dead letter once; returns false when it was already recorded.
    pub async fn record_dead_letter(&self, record: &DeadLetterRecord) -> Result<bool, StoreError> {
        let written = self
            .db()
            .fluent()
            .update()
            .in_col(DEAD_LETTERS)
            .precondition(FirestoreWritePrecondition::Exists(false))
            .document_id(record.id())
            .object(record)
            .execute::<DeadLetterRecord>()
            .await;
        match written {
            Ok(_) => Ok(true),
            Err(error) if crate::gcp::errors::is_already_exists(&error) => Ok(false),
            Err(error) => Err(firestore_error("recording a dead letter")(error)),
        }
    }

    /// Whether the dead letter with this record id was recorded already.
    pub async fn dead_letter_recorded(&self, id: &str) -> Result<bool, StoreError> {
        let document = self
            .db()
            .fluent()
            .select()
            .by_id_in(DEAD_LETTERS)
            .one(id)
            .await
            .map_err(firestore_error("reading a dead letter record"))?;
        Ok(document.is_some())
    }

    /// Dead letters, newest first, at most `limit`.
    pub async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetterRecord>, StoreError> {
        self.db()
            .fluent()
            .select()
            .from(DEAD_LETTERS)
            .order(|o| o.fields([o.field("recorded_at").descending()]))
            .limit(limit)
            .obj()
            .query()
            .await
            .map_err(firestore_error("listing dead letters"))
    }
}

/// Consumer of one channel's dead-letter subscription.
pub struct DeadLetterRole<D> {
    pub engine: Arc<BatchEngine<D>>,
    pub channel: ChannelKind,
}

impl<D: BatchDomain> DeadLetterRole<D> {
    /// Applies what the engine can still do with the message; the text says what happened.
    async fn apply(&self, record: &DeadLetterRecord, delivery: &Delivery) -> Result<String, EngineError> {
        match self.channel {
            ChannelKind::Request => {
                let Ok(request) = RequestMessage::parse(&delivery.data) else {
                    return Ok("recorded (not a valid request)".into());
                };
                if delivery.attributes.contains_key(REJECT_REASON) {
                    // A handler's permanent verdict on this request: the item fails.
                    let error = format!("dead-lettered: {}", record.reason);
                    let report = self.engine.complete(&CompletionMessage::failed(&request, &error)).await;
                    return describe("item marked failed", report);
                }
                // Out of delivery attempts with no verdict: not the item's fault. Back to work.
                match self.engine.redrive_item(&request, &record.reason, &record.id()).await? {
                    ItemRedriveReport::Redriven { redrive, max } => {
                        Ok(format!("request re-published (item redrive {redrive} of {max})"))
                    }
                    ItemRedriveReport::Failed(report) => {
                        describe("item marked failed: redrive cap reached", Ok(report))
                    }
                    ItemRedriveReport::Moot(why) => Ok(format!("nothing to do: {why}")),
                }
            }
            ChannelKind::Completion => {
                let Ok(completion) = CompletionMessage::parse(&delivery.data) else {
                    return Ok("recorded (not a valid completion)".into());
                };
                Ok(describe("completion recorded", self.engine.complete(&completion).await)?)
            }
            ChannelKind::Ready => {
                let Ok(ready) = ReadyMessage::parse(&delivery.data) else {
                    return Ok("recorded (not a valid ready event)".into());
                };
                if delivery.attributes.contains_key(REJECT_REASON) {
                    // The exporter's permanent verdict: retrying cannot help; an operator decides.
                    return Ok("recorded for an operator".into());
                }
                // Out of attempts with no verdict (an outage, a lock): not the export's fault. Again.
                self.engine.reannounce(&ready).await
            }
            // A PUBLISHING batch whose trigger is gone is resumed by the sweeper.
            ChannelKind::Trigger => Ok("recorded for an operator".into()),
        }
    }
}

/// Turns the engine's answer into the record's `action`; only transient errors stay errors (retry).
fn describe(recorded: &str, report: Result<CompletionReport, EngineError>) -> Result<String, EngineError> {
    match report {
        Ok(CompletionReport::Recorded(_)) => Ok(recorded.to_string()),
        Ok(CompletionReport::Announced(_)) => Ok("nothing to record: its worker recorded the item".to_string()),
        Ok(CompletionReport::Duplicate(_)) => Ok("nothing to do: the item was already terminal".to_string()),
        Ok(CompletionReport::Fenced) => Ok("nothing to do: the batch moved to another generation".to_string()),
        // The completion is in (the claim is only looked at after it was recorded) and another
        // instance's live claim is finalizing the batch; if that instance dies, the sweeper takes over
        // the expired lease. Retrying would only find the item terminal and record a misleading action.
        Err(EngineError::ClaimHeld { .. }) => Ok(recorded.to_string()),
        Err(error) if error.is_transient() => Err(error),
        Err(error) => Ok(format!("could not be applied: {error}")),
    }
}

impl<D: BatchDomain> MessageHandler for DeadLetterRole<D> {
    async fn handle(&self, delivery: &Delivery) -> Outcome {
        let mut record = DeadLetterRecord::of(self.channel, delivery);
        // The record is written last, so one that exists means this dead letter was handled and only
        // its ack was lost: applying it again would count another redrive.
        match self.engine.store().dead_letter_recorded(&record.id()).await {
            Ok(true) => return Outcome::Ack,
            Ok(false) => {}
            Err(error) => return Outcome::Retry(format!("dead letter not handled yet: {error}")),
        }
        record.action = match self.apply(&record, delivery).await {
            Ok(action) => action,
            Err(error) => return Outcome::Retry(format!("dead letter not handled yet: {error}")),
        };
        match self.engine.store().record_dead_letter(&record).await {
            Ok(created) => {
                if created {
                    metrics::counter!(DEAD_LETTERS_RECORDED_TOTAL, "channel" => record.channel.clone()).increment(1);
                }
                tracing::warn!(
                    channel = record.channel,
                    source_subscription = record.source_subscription,
                    original_message_id = record.original_message_id,
                    reason = record.reason,
                    action = record.action,
                    "dead letter recorded"
                );
                Outcome::Ack
            }
            Err(error) => Outcome::Retry(format!("could not record the dead letter: {error}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(attributes: &[(&str, &str)]) -> Delivery {
        Delivery {
            message_id: "dlq-7".into(),
            data: bytes::Bytes::from_static(b"{not json"),
            attributes: attributes.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            delivery_attempt: None,
            subscription: "prediction-trigger-dead-letter".into(),
        }
    }

    #[test]
    fn a_runtime_reject_keeps_its_reason_origin_and_attempt() {
        let record = DeadLetterRecord::of(
            ChannelKind::Trigger,
            &delivery(&[
                (REJECT_REASON, "invalid trigger: expected value"),
                (SOURCE_SUBSCRIPTION, "prediction-trigger-coordinator"),
                (ORIGINAL_MESSAGE_ID, "42"),
                (DELIVERY_ATTEMPT, "1"),
            ]),
        );
        assert_eq!(record.reason, "invalid trigger: expected value");
        assert_eq!(record.source_subscription, "prediction-trigger-coordinator");
        assert_eq!(record.original_message_id, "42");
        assert_eq!(record.delivery_attempts, Some(1));
        assert_eq!(record.data, "{not json");
        assert_eq!(record.id(), "trigger-prediction-trigger-coordinator-42");
    }

    #[test]
    fn a_message_forwarded_by_pubsub_gets_an_exhaustion_reason() {
        let record = DeadLetterRecord::of(
            ChannelKind::Request,
            &delivery(&[
                (PUBSUB_DELIVERY_COUNT, "5"),
                (PUBSUB_SOURCE_SUBSCRIPTION, "projects/p/subscriptions/prediction-requests-worker"),
            ]),
        );
        assert_eq!(record.reason, "not acknowledged after 5 delivery attempts");
        assert_eq!(record.source_subscription, "prediction-requests-worker");
        assert_eq!(record.original_message_id, "dlq-7", "its own id, stable across redeliveries");
    }

    #[test]
    fn long_data_is_truncated_and_flagged() {
        let mut long = delivery(&[]);
        long.data = bytes::Bytes::from(vec![b'x'; MAX_RECORDED_DATA_BYTES + 10]);
        let record = DeadLetterRecord::of(ChannelKind::Completion, &long);
        assert_eq!(record.data.len(), MAX_RECORDED_DATA_BYTES);
        assert!(record.data_truncated);
    }
}
