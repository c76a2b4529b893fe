//! The coordinator's logic: turn a trigger into a sealed batch, record completions, and finalize each
//! batch exactly once. Every step is safe to repeat: a redelivered message re-runs it and finds the
//! work already done in Firestore.

use std::sync::Arc;

use futures::StreamExt;
use google_cloud_pubsub::model::Message;
use thiserror::Error;
use tracing::Instrument;

use super::audit::AuditOutcome;
use super::claims::ClaimRegistry;
use super::coalesce::{Coalesced, TrailingCoalescer};
use super::documents::{BatchHeader, ItemStatus};
use super::domain::{BatchDomain, DomainError};
use super::settings::EngineSettings;
use super::state::{BatchState, CompletionAction, completion_action};
use super::store::{BatchStore, BeginOutcome, CompletionRecord, NewBatch, StoreError};
use crate::config::TopicNames;
use crate::gcp::GcpError;
use crate::gcp::errors::Retryability;
use crate::gcp::pubsub::PubSub;
use crate::messages::{CompletionMessage, GameDate, RequestMessage, TriggerMessage, validate_document_id};

/// How many request publishes a fan-out keeps in flight: enough to fill the publisher's batches (its
/// default batch holds 100 messages) several times over, few enough that the requests alive at once
/// do not grow with the batch.
const PUBLISH_WINDOW: usize = 500;

/// Stable marker in the log line of a batch that ended FAILED, for log-based alerts.
pub const ALERT_BATCH_FAILED: &str = "ALERT_BATCH_FAILED";

/// Stable marker in the log line of a batch that completed below the coverage alert threshold.
pub const ALERT_LOW_COVERAGE: &str = "ALERT_LOW_COVERAGE";

#[derive(Debug, Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Pubsub(#[from] GcpError),
    #[error("domain: {0}")]
    Domain(#[from] DomainError),
    #[error("invalid item id from the domain: {0}")]
    InvalidItem(String),
    /// The finalize claim is held by a live instance; try again after its lease.
    #[error("finalization of {batch_id} is held by {owner} for another {}s", .expires_in.as_secs())]
    ClaimHeld { batch_id: String, owner: String, expires_in: std::time::Duration },
}

impl EngineError {
    /// What retrying the message can do (the one classification in [`crate::gcp::errors`]).
    pub fn retryability(&self) -> Retryability {
        match self {
            EngineError::Store(e) => e.retryability(),
            EngineError::Pubsub(e) => e.retryability(),
            EngineError::Domain(DomainError::Transient(_)) => Retryability::Retry,
            EngineError::Domain(DomainError::Permanent(_)) => Retryability::Reject,
            EngineError::InvalidItem(_) => Retryability::Reject,
            EngineError::ClaimHeld { .. } => Retryability::Retry,
        }
    }

    pub fn is_transient(&self) -> bool {
        self.retryability() == Retryability::Retry
    }
}

/// What a trigger led to.
#[derive(Debug, Clone, PartialEq)]
pub enum TriggerReport {
    Started {
        batch_id: String,
        generation: u64,
        items: usize,
        superseded: Option<String>,
    },
    Resumed {
        batch_id: String,
        republished: usize,
    },
    NoOpActiveBatch {
        active_batch_id: String,
    },
    /// The date's current batch has this trigger's correlation id: a repeat of the same action.
    Duplicate {
        batch_id: String,
    },
    /// A redelivery of a trigger decided before without a batch (no-op or rejected).
    AlreadyDecided {
        outcome: AuditOutcome,
    },
}

/// What a completion led to.
#[derive(Debug, Clone, PartialEq)]
pub enum CompletionReport {
    /// Recorded here (a completion of the older shape, or a dead letter's verdict).
    Recorded(FinalizeReport),
    /// Announced by the worker that recorded the item: nothing was recorded here.
    Announced(FinalizeReport),
    Duplicate(FinalizeReport),
    /// For a batch that is not (or no longer) collecting this generation.
    Fenced,
}

/// Where finalization stands after a completion or a sweep.
#[derive(Debug, Clone, PartialEq)]
pub enum FinalizeReport {
    NotReady,
    /// This call moved the batch to a final state.
    Finalized(BatchState),
    /// Already final (and announced, when COMPLETE).
    AlreadyFinal(BatchState),
    /// Left to whoever finishes it: another attempt holds a live claim, or this attempt failed after
    /// its completion was recorded. The holder, the claim's expiry or the sweeper finishes the batch,
    /// so the message is acked rather than redelivered into a contended header.
    Deferred(String),
}

pub struct BatchEngine<D> {
    pub(super) store: BatchStore,
    pub(super) pubsub: PubSub,
    pub(super) topics: TopicNames,
    pub(super) domain: Arc<D>,
    pub(super) settings: EngineSettings,
    pub(super) instance_id: String,
    /// Claims taken and not yet finished, released at shutdown.
    pub(super) claims: ClaimRegistry,
    /// Completions' wholeness checks by batch id: those that arrive while a check of their batch runs
    /// share the one check that starts after it (nothing durable is kept; see [`super::coalesce`]).
    checks: TrailingCoalescer<String, FinalizeReport>,
}

impl<D: BatchDomain> BatchEngine<D> {
    pub fn new(
        store: BatchStore,
        pubsub: PubSub,
        topics: TopicNames,
        domain: Arc<D>,
        settings: EngineSettings,
    ) -> Self {
        let instance_id = settings.instance_id();
        Self {
            store,
            pubsub,
            topics,
            domain,
            settings,
            instance_id,
            claims: ClaimRegistry::default(),
            checks: TrailingCoalescer::default(),
        }
    }

    pub fn store(&self) -> &BatchStore {
        &self.store
    }

    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    pub fn claims(&self) -> &ClaimRegistry {
        &self.claims
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// Trigger: create or resume the batch, write its markers, publish its requests, seal it.
    pub async fn start(&self, trigger: &TriggerMessage, message_id: &str) -> Result<TriggerReport, EngineError> {
        let correlation_id =
            if trigger.correlation_id.is_empty() { message_id.to_string() } else { trigger.correlation_id.clone() };
        let items = self.listed_items(trigger.game_date).await?;
        let model_version = self.domain.model_version(trigger.game_date).await?;
        let counter_shards = self.settings.counter_shards_for(items.len() as u64);
        let spec = NewBatch {
            trigger: trigger.clone(),
            trigger_message_id: message_id.to_string(),
            correlation_id: correlation_id.clone(),
            expected_count: items.len() as u64,
            counter_shards,
            shards_count_down: true,
            tolerated_failed_fraction: self.settings.tolerated_failed_fraction,
            model_version,
            retention: self.settings.retention(),
        };
        let (header, created, superseded) = match self.store.begin_batch(&spec).await? {
            BeginOutcome::ActiveBatchExists(active) => {
                tracing::info!(
                    game_date = %trigger.game_date, active_batch_id = active.batch_id, correlation_id,
                    "start ignored: a batch for this date is active (set metadata.force to override)"
                );
                return Ok(TriggerReport::NoOpActiveBatch { active_batch_id: active.batch_id });
            }
            BeginOutcome::Duplicate(current) => {
                tracing::info!(
                    game_date = %trigger.game_date, batch_id = current.batch_id, correlation_id,
                    "trigger ignored: it repeats the correlation id of the date's current batch"
                );
                return Ok(TriggerReport::Duplicate { batch_id: current.batch_id });
            }
            BeginOutcome::AlreadyDecided(record) => {
                tracing::info!(game_date = %trigger.game_date, outcome = %record.outcome, correlation_id,
                    "redelivered trigger: decided before");
                return Ok(TriggerReport::AlreadyDecided { outcome: record.outcome });
            }
            BeginOutcome::Created { header, superseded } => (header, true, superseded),
            BeginOutcome::Resumed(header) => (header, false, None),
        };
        let span = tracing::info_span!(
            "batch",
            batch_id = header.batch_id,
            game_date = header.game_date,
            generation = header.generation,
            correlation_id
        );
        self.carry_on(header, items, created, superseded).instrument(span).await
    }

    /// The domain's items for a date, validated as document ids, in one order: sorted, without
    /// repeats. Each item's counter shard is its position in this list (see
    /// [`super::documents::shard_of_position`]), so the trigger, its redelivery and the sweeper resuming
    /// the fan-out must all see the same list in the same order, and a repeated item would be counted
    /// twice in `expected_count` but could only ever complete once.
    pub(crate) async fn listed_items(&self, game_date: GameDate) -> Result<Vec<String>, EngineError> {
        let mut items = self.domain.list_items(game_date).await?;
        if let Some(bad) = items.iter().find(|item| validate_document_id("item", item).is_err()) {
            return Err(EngineError::InvalidItem(bad.clone()));
        }
        items.sort_unstable();
        items.dedup();
        Ok(items)
    }

    /// The rest of a trigger once its batch exists: fan out unless sealed before, then try to finalize
    /// (completions may all have arrived before the seal, or there are no items at all).
    async fn carry_on(
        &self,
        header: BatchHeader,
        items: Vec<String>,
        created: bool,
        superseded: Option<String>,
    ) -> Result<TriggerReport, EngineError> {
        if let Some(older) = &superseded {
            tracing::info!(superseded_batch_id = older, "regenerating: older batch superseded");
        }
        if header.state != BatchState::Publishing {
            // Sealed before: the trigger was redelivered after its work was done (or the ack was lost).
            self.finalize_after_seal(&header.batch_id).await;
            return Ok(TriggerReport::Resumed { batch_id: header.batch_id, republished: 0 });
        }
        let (sealed, published) = self.fan_out(&header, items, created).await?;
        self.finalize_after_seal(&sealed.batch_id).await;
        Ok(if created {
            TriggerReport::Started {
                batch_id: sealed.batch_id,
                generation: sealed.generation,
                items: sealed.expected_count as usize,
                superseded,
            }
        } else {
            TriggerReport::Resumed { batch_id: sealed.batch_id, republished: published }
        })
    }

    /// The fan-out of a PUBLISHING batch: a pending marker per item (create-only), a request per pending
    /// item (every item when `fresh`, the batch having just been created), then the seal. Safe to
    /// repeat: by a redelivered trigger, or by the sweeper resuming a batch whose coordinator is gone.
    /// Returns the sealed header and how many requests were published.
    pub(crate) async fn fan_out(
        &self,
        header: &BatchHeader,
        items: Vec<String>,
        fresh: bool,
    ) -> Result<(BatchHeader, usize), EngineError> {
        if items.len() as u64 != header.expected_count {
            return Err(StoreError::ItemsChanged {
                batch_id: header.batch_id.clone(),
                expected: header.expected_count,
                listed: items.len() as u64,
            }
            .into());
        }
        self.store
            .write_item_markers(&header.batch_id, &items, header.counter_shards, header.shards_count_down)
            .await?;
        // A resumed batch republishes only what is still pending; completed items are not redone.
        let to_publish = if fresh { items } else { self.store.items_in(&header.batch_id, ItemStatus::Pending).await? };
        self.publish_requests(header, &header.correlation_id, &to_publish).await?;
        let sealed = self.store.seal(&header.batch_id).await?;
        tracing::info!(items = sealed.expected_count, published = to_publish.len(), state = %sealed.state, "batch sealed");
        Ok((sealed, to_publish.len()))
    }

    /// Finalizes a sealed batch whose completions may all be in already. The trigger's work is done
    /// once the batch is sealed, so a failure here is left to the completions and the sweeper rather
    /// than redelivering the trigger.
    pub(crate) async fn finalize_after_seal(&self, batch_id: &str) {
        match self.finalize_if_whole(batch_id).await {
            Ok(_) | Err(EngineError::ClaimHeld { .. }) => {}
            Err(error) => {
                tracing::warn!(batch_id, %error, "finalizing after the seal failed; completions or the sweeper finish it")
            }
        }
    }

    /// Publishes one request per item and waits until every one is accepted by Pub/Sub. At most
    /// [`PUBLISH_WINDOW`] requests are in flight, so the coordinator's memory does not grow with the
    /// batch. The first failed publish fails the call (the trigger's redelivery publishes again).
    pub async fn publish_requests(
        &self,
        header: &BatchHeader,
        correlation_id: &str,
        items: &[String],
    ) -> Result<(), EngineError> {
        let game_date = header.game_date.parse().map_err(|_| EngineError::InvalidItem(header.game_date.clone()))?;
        let publisher = self.pubsub.publisher(&self.topics.request_topic);
        // A request is built only when the window has room for it: the iterator is lazy.
        let sends =
            request_messages(header, game_date, correlation_id, items).map(|message| publisher.publish(message));
        let mut sends = futures::stream::iter(sends).buffer_unordered(PUBLISH_WINDOW);
        while let Some(sent) = sends.next().await {
            sent.map_err(|source| GcpError::Publish { topic: self.topics.request_topic.clone(), source })?;
        }
        Ok(())
    }

    /// Completion: a worker's announcement of an item it recorded (check wholeness only if its shard
    /// may have emptied), or one to record here (the older shape, a dead letter's verdict) once,
    /// then finalize if the batch became whole.
    pub async fn complete(&self, completion: &CompletionMessage) -> Result<CompletionReport, EngineError> {
        match completion_action(completion) {
            CompletionAction::Record => {}
            // The batch cannot be whole while this item's shard has items to go: nothing to read.
            CompletionAction::Nothing => return Ok(CompletionReport::Announced(FinalizeReport::NotReady)),
            CompletionAction::CheckWholeness => {
                return Ok(CompletionReport::Announced(self.check_after_completion(&completion.batch_id).await?));
            }
            CompletionAction::CheckOnce => {
                return Ok(CompletionReport::Announced(self.check_once(&completion.batch_id).await));
            }
        }
        let Some(header) = self.store.header(&completion.batch_id).await? else {
            return Err(StoreError::UnknownBatch(completion.batch_id.clone()).into());
        };
        if completion.generation != header.generation {
            tracing::info!(
                batch_id = header.batch_id,
                generation = completion.generation,
                "stale-generation completion ignored"
            );
            return Ok(CompletionReport::Fenced);
        }
        match self.store.record_completion(completion, header.counter_shards).await? {
            CompletionRecord::UnknownItem => {
                Err(EngineError::InvalidItem(format!("batch {} has no item {}", completion.batch_id, completion.item)))
            }
            // A live claim is another attempt's to finish: the completion is in, nothing to retry.
            // Its shard still counts items down: the completion that empties the last shard checks.
            CompletionRecord::Recorded { shard_remaining: Some(left) } if header.shards_count_down && left > 0 => {
                Ok(CompletionReport::Recorded(FinalizeReport::NotReady))
            }
            CompletionRecord::Recorded { .. } => {
                Ok(CompletionReport::Recorded(self.check_after_completion(&header.batch_id).await?))
            }
            // A duplicate may be the redelivery of a completion whose finalize never ran: try once more,
            // but a duplicate is a no-op for its item, so it is never retried for the batch's sake (the
            // sweeper finalizes a whole batch; retrying here only contends on the header).
            CompletionRecord::Duplicate => Ok(CompletionReport::Duplicate(self.check_once(&header.batch_id).await)),
        }
    }

    /// Finalizes if the batch is whole, once: for a completion that changed nothing, whose failure
    /// is left to the claim holder or the sweeper (retrying it only contends on the header).
    async fn check_once(&self, batch_id: &str) -> FinalizeReport {
        match self.check_after_completion(batch_id).await {
            Ok(report) => report,
            Err(error) => {
                tracing::info!(batch_id, %error, "duplicate completion acked; finalization left to the claim holder or the sweeper");
                FinalizeReport::Deferred(error.to_string())
            }
        }
    }

    /// Finalizes after a recorded item if the batch is whole; a live claim is another attempt's to
    /// finish, so the completion is done with (the holder, its lease's expiry or the sweeper finishes).
    ///
    /// Coalesced per batch on the trailing edge: a completion that arrives while a check of its batch
    /// runs waits for it, then takes the answer of the one check that starts after it, which saw its
    /// commit (near the end of a large batch, many shards empty at once and each of their completions
    /// would otherwise read the header and sum the shards). A check's error is not shared; its
    /// `Deferred` (a live claim) is, since a claim is taken only on a whole or finalizing batch.
    async fn check_after_completion(&self, batch_id: &str) -> Result<FinalizeReport, EngineError> {
        let check = || async {
            match self.finalize_if_whole(batch_id).await {
                Err(EngineError::ClaimHeld { owner, .. }) => {
                    Ok(FinalizeReport::Deferred(format!("claim held by {owner}")))
                }
                other => other,
            }
        };
        Ok(match self.checks.run(batch_id.to_string(), check).await? {
            Coalesced::Ran(report) => report,
            Coalesced::Shared(report) => report.into_shared(),
        })
    }
}

impl FinalizeReport {
    /// The report for a completion answered by another's check: that check, not this completion,
    /// moved the batch to its final state.
    fn into_shared(self) -> Self {
        match self {
            FinalizeReport::Finalized(state) => FinalizeReport::AlreadyFinal(state),
            other => other,
        }
    }
}

/// The request message of each item, built as the iterator is drawn. A function of its own, not a
/// closure in `publish_requests`: there the closure's borrow of an item was inferred for one lifetime
/// only, and the handlers' futures were no longer `Send`.
fn request_messages<'a>(
    header: &'a BatchHeader,
    game_date: GameDate,
    correlation_id: &'a str,
    items: &'a [String],
) -> impl Iterator<Item = Message> + Send + 'a {
    items.iter().map(move |item| {
        let request = RequestMessage {
            batch_id: header.batch_id.clone(),
            generation: header.generation,
            game_date,
            item: item.clone(),
            correlation_id: correlation_id.to_string(),
        };
        Message::new().set_data(request.to_json())
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use firestore::errors::{FirestoreDatabaseError, FirestoreError, FirestoreErrorPublicGenericDetails};

    use super::*;

    fn commit_error(code: &str) -> EngineError {
        let source = FirestoreError::DatabaseError(FirestoreDatabaseError {
            public: FirestoreErrorPublicGenericDetails { code: code.into() },
            details: "commit (test)".into(),
            retry_possible: false,
        });
        EngineError::Store(StoreError::Firestore { operation: "sealing a batch", source: Box::new(source) })
    }

    #[test]
    fn a_trigger_whose_seal_commit_timed_out_is_retried_not_rejected() {
        assert_eq!(commit_error("DeadlineExceeded").retryability(), Retryability::Retry);
        assert_eq!(commit_error("Unavailable").retryability(), Retryability::Retry);
        assert_eq!(commit_error("Internal").retryability(), Retryability::Retry);
        assert_eq!(commit_error("FailedPrecondition").retryability(), Retryability::Reject);
    }

    #[test]
    fn a_completion_answered_by_another_check_did_not_finalize_the_batch_itself() {
        let shared = |report: FinalizeReport| report.into_shared();
        assert_eq!(
            shared(FinalizeReport::Finalized(BatchState::Complete)),
            FinalizeReport::AlreadyFinal(BatchState::Complete)
        );
        assert_eq!(shared(FinalizeReport::NotReady), FinalizeReport::NotReady);
        let deferred = FinalizeReport::Deferred("claim held by a".into());
        assert_eq!(shared(deferred.clone()), deferred);
    }

    #[test]
    fn only_bad_input_or_a_permanent_domain_verdict_rejects() {
        let held = EngineError::ClaimHeld { batch_id: "b".into(), owner: "a".into(), expires_in: Duration::ZERO };
        assert!(held.is_transient());
        assert!(EngineError::Domain(DomainError::Transient("read failed".into())).is_transient());
        assert!(!EngineError::Domain(DomainError::Permanent("no slate".into())).is_transient());
        assert!(!EngineError::InvalidItem("a/b".into()).is_transient());
        assert!(!EngineError::Store(StoreError::UnknownBatch("b".into())).is_transient());
    }
}
