//! The coordinator's logic: turn a trigger into a sealed batch, record completions, and finalize each
//! batch exactly once. Every step is safe to repeat: a redelivered message re-runs it and finds the
//! work already done in Firestore.

use std::sync::Arc;

use google_cloud_pubsub::model::Message;
use thiserror::Error;

use super::audit::AuditOutcome;
use super::documents::{BatchHeader, ItemStatus};
use super::domain::{BatchDomain, ConsolidationReport, DomainError};
use super::settings::EngineSettings;
use super::state::{BatchState, ClaimDecision, decide_claim, is_low_coverage, outcome};
use super::status::skipped_items;
use super::store::{BatchStore, BeginOutcome, CompletionRecord, FinishOutcome, NewBatch, StoreError};
use crate::config::TopicNames;
use crate::gcp::GcpError;
use crate::gcp::pubsub::PubSub;
use crate::messages::{CompletionMessage, ReadyMessage, RequestMessage, TriggerMessage, validate_document_id};
use crate::ops::metrics::{ALERTS_TOTAL, FINALIZE_SECONDS};

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
    pub fn is_transient(&self) -> bool {
        match self {
            EngineError::Store(e) => e.is_transient(),
            EngineError::Pubsub(e) => e.is_transient(),
            EngineError::Domain(e) => matches!(e, DomainError::Transient(_)),
            EngineError::InvalidItem(_) => false,
            EngineError::ClaimHeld { .. } => true,
        }
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
    Recorded(FinalizeReport),
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
}

pub struct BatchEngine<D> {
    store: BatchStore,
    pubsub: PubSub,
    topics: TopicNames,
    domain: Arc<D>,
    settings: EngineSettings,
    instance_id: String,
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
        Self { store, pubsub, topics, domain, settings, instance_id }
    }

    pub fn store(&self) -> &BatchStore {
        &self.store
    }

    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// Trigger: create or resume the batch, write its markers, publish its requests, seal it.
    pub async fn start(&self, trigger: &TriggerMessage, message_id: &str) -> Result<TriggerReport, EngineError> {
        let correlation_id =
            if trigger.correlation_id.is_empty() { message_id.to_string() } else { trigger.correlation_id.clone() };
        let items = self.domain.list_items(trigger.game_date).await?;
        if let Some(bad) = items.iter().find(|item| validate_document_id("item", item).is_err()) {
            return Err(EngineError::InvalidItem(bad.clone()));
        }
        let spec = NewBatch {
            trigger: trigger.clone(),
            trigger_message_id: message_id.to_string(),
            correlation_id: correlation_id.clone(),
            expected_count: items.len() as u64,
            counter_shards: self.settings.counter_shards,
            tolerated_failed_fraction: self.settings.tolerated_failed_fraction,
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
        let _entered = span.enter();
        if let Some(older) = &superseded {
            tracing::info!(superseded_batch_id = older, "regenerating: older batch superseded");
        }
        if header.state != BatchState::Publishing {
            // Sealed before: the trigger was redelivered after its work was done (or the ack was lost).
            drop(_entered);
            self.finalize_if_whole(&header.batch_id).await?;
            return Ok(TriggerReport::Resumed { batch_id: header.batch_id, republished: 0 });
        }
        if items.len() as u64 != header.expected_count {
            return Err(StoreError::ItemsChanged {
                batch_id: header.batch_id,
                expected: header.expected_count,
                listed: items.len() as u64,
            }
            .into());
        }
        self.store.write_item_markers(&header.batch_id, &items).await?;
        // A resumed batch republishes only what is still pending; completed items are not redone.
        let to_publish =
            if created { items } else { self.store.items_in(&header.batch_id, ItemStatus::Pending).await? };
        self.publish_requests(&header, &correlation_id, &to_publish).await?;
        let sealed = self.store.seal(&header.batch_id).await?;
        tracing::info!(items = sealed.expected_count, published = to_publish.len(), state = %sealed.state, "batch sealed");
        drop(_entered);
        // Completions may all have arrived before the seal (or there are no items at all).
        self.finalize_if_whole(&sealed.batch_id).await?;
        Ok(if created {
            TriggerReport::Started {
                batch_id: sealed.batch_id,
                generation: sealed.generation,
                items: sealed.expected_count as usize,
                superseded,
            }
        } else {
            TriggerReport::Resumed { batch_id: sealed.batch_id, republished: to_publish.len() }
        })
    }

    /// Publishes one request per item and waits until every one is accepted by Pub/Sub.
    pub async fn publish_requests(
        &self,
        header: &BatchHeader,
        correlation_id: &str,
        items: &[String],
    ) -> Result<(), EngineError> {
        let game_date = header.game_date.parse().map_err(|_| EngineError::InvalidItem(header.game_date.clone()))?;
        let publisher = self.pubsub.publisher(&self.topics.request_topic);
        let sends = items.iter().map(|item| {
            let request = RequestMessage {
                batch_id: header.batch_id.clone(),
                generation: header.generation,
                game_date,
                player_lookup: item.clone(),
                correlation_id: correlation_id.to_string(),
            };
            publisher.publish(Message::new().set_data(request.to_json()))
        });
        let results = futures::future::join_all(sends).await;
        if let Some(Err(source)) = results.into_iter().find(Result::is_err) {
            return Err(GcpError::Publish { topic: self.topics.request_topic.clone(), source }.into());
        }
        Ok(())
    }

    /// Completion: record it once, then finalize if the batch became whole.
    pub async fn complete(&self, completion: &CompletionMessage) -> Result<CompletionReport, EngineError> {
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
            CompletionRecord::UnknownItem => Err(EngineError::InvalidItem(format!(
                "batch {} has no item {}",
                completion.batch_id, completion.player_lookup
            ))),
            CompletionRecord::Recorded => {
                Ok(CompletionReport::Recorded(self.finalize_if_whole(&header.batch_id).await?))
            }
            // A duplicate may be the redelivery of a completion whose finalize never ran: check again.
            CompletionRecord::Duplicate => {
                Ok(CompletionReport::Duplicate(self.finalize_if_whole(&header.batch_id).await?))
            }
        }
    }

    /// Finalizes `batch_id` if every item is terminal: claim, consolidate, fence, finish, announce.
    /// Safe to call any number of times from any instance.
    pub async fn finalize_if_whole(&self, batch_id: &str) -> Result<FinalizeReport, EngineError> {
        let Some(header) = self.store.header(batch_id).await? else {
            return Err(StoreError::UnknownBatch(batch_id.to_string()).into());
        };
        match header.state {
            BatchState::Publishing => return Ok(FinalizeReport::NotReady),
            BatchState::Complete => {
                if header.ready_message_id.is_none()
                    && self
                        .store
                        .claim_announcement(batch_id, &self.claim_owner(), self.settings.finalize_lease())
                        .await?
                {
                    tracing::warn!(batch_id, "re-announcing a complete batch whose ready event was never recorded");
                    self.announce(&header).await?;
                }
                return Ok(FinalizeReport::AlreadyFinal(header.state));
            }
            BatchState::Failed | BatchState::Superseded => return Ok(FinalizeReport::AlreadyFinal(header.state)),
            BatchState::Running | BatchState::Finalizing => {}
        }
        let owner = self.claim_owner();
        // Another attempt's live claim is in the header just read: answer from it. The totals query
        // and the claim transaction would decide the same, and that transaction's lock on the header
        // only delays the holder's `finish` (measured by `make bench`: completions redelivered while a
        // 5,000-item batch consolidated kept the header contended and finalize took 11 s).
        if let ClaimDecision::HeldByOther { owner, expires_in } = decide_claim(
            header.state,
            header.expected_count,
            header.expected_count,
            header.finalize_claim.as_ref(),
            &owner,
            firestore::FirestoreInstant::now(),
        ) {
            return Err(EngineError::ClaimHeld { batch_id: batch_id.to_string(), owner, expires_in });
        }
        let totals = self.store.totals(batch_id).await?;
        if header.state == BatchState::Running && totals.terminal() < header.expected_count {
            return Ok(FinalizeReport::NotReady);
        }
        let claim = self.store.claim_finalize(batch_id, &owner, self.settings.finalize_lease(), totals).await?;
        match claim.decision {
            ClaimDecision::NotReady => return Ok(FinalizeReport::NotReady),
            ClaimDecision::AlreadyFinal => return Ok(FinalizeReport::AlreadyFinal(claim.header.state)),
            ClaimDecision::HeldByOther { owner, expires_in } => {
                return Err(EngineError::ClaimHeld { batch_id: batch_id.to_string(), owner, expires_in });
            }
            ClaimDecision::TakeOver { previous_owner } => {
                tracing::warn!(batch_id, previous_owner, "finalize lease expired; taking over");
            }
            ClaimDecision::Claim | ClaimDecision::AlreadyMine => {}
        }
        let claimed_at = std::time::Instant::now();
        let header = claim.header;
        // Consolidate only a batch that will complete: `finish` itself applies the failure policy
        // and supersedes a batch whose date pointer moved on.
        let will_fail = outcome(totals.failed, totals.skipped, header.expected_count, header.tolerated_failed_fraction)
            == BatchState::Failed;
        let failure_reason = if will_fail || !self.store.is_current(&header).await? {
            None
        } else {
            self.consolidate(&header, &owner, totals.skipped).await?
        };
        let finished = match self.store.finish(batch_id, &owner, totals, failure_reason.as_deref()).await? {
            FinishOutcome::NotOwner(header) => {
                tracing::warn!(batch_id, state = %header.state, "lost the finalize claim before finishing");
                return Ok(FinalizeReport::AlreadyFinal(header.state));
            }
            FinishOutcome::Finished(header) => header,
        };
        match finished.state {
            BatchState::Complete => {
                tracing::info!(
                    batch_id,
                    done = totals.done,
                    failed = totals.failed,
                    skipped = totals.skipped,
                    "batch complete"
                );
                self.alert_if_low_coverage(&finished);
                self.announce(&finished).await?;
            }
            BatchState::Failed => {
                metrics::counter!(ALERTS_TOTAL, "alert" => "batch_failed").increment(1);
                tracing::error!(
                    marker = ALERT_BATCH_FAILED,
                    batch_id,
                    game_date = finished.game_date,
                    reason = finished.failure_reason.as_deref().unwrap_or_default(),
                    "{ALERT_BATCH_FAILED}: batch failed and was not consolidated"
                )
            }
            state => tracing::info!(batch_id, %state, "batch finished"),
        }
        // Claim to final state (and ready event published, for a COMPLETE batch).
        metrics::histogram!(FINALIZE_SECONDS).record(claimed_at.elapsed().as_secs_f64());
        Ok(FinalizeReport::Finalized(finished.state))
    }

    /// Consolidates through the domain and adds what it changed to the audit record of the batch's
    /// trigger. Returns the failure reason of a permanent consolidation error; on a transient error the
    /// claim is released first, so the redelivery takes over now rather than after the lease.
    async fn consolidate(
        &self,
        header: &BatchHeader,
        owner: &str,
        skipped: u64,
    ) -> Result<Option<String>, EngineError> {
        let result = match self.domain.consolidate(header).await {
            Ok(report) => match self.audit_consolidation(header, &report, skipped).await {
                Err(error) if !error.is_transient() => {
                    // The predictions are in place; an audit that cannot be written must not block them.
                    tracing::error!(batch_id = header.batch_id, %error, "could not audit the consolidation");
                    Ok(())
                }
                other => other.map_err(EngineError::from),
            },
            Err(DomainError::Permanent(reason)) => return Ok(Some(format!("consolidation failed: {reason}"))),
            Err(transient) => Err(transient.into()),
        };
        if let Err(error) = result {
            if let Err(release) = self.store.release_claim(&header.batch_id, owner).await {
                tracing::warn!(batch_id = header.batch_id, error = %release, "could not release the finalize claim; it expires with its lease");
            }
            return Err(error);
        }
        Ok(None)
    }

    /// Adds the consolidation's counts and the skipped items (with their reasons) to the audit record.
    async fn audit_consolidation(
        &self,
        header: &BatchHeader,
        report: &ConsolidationReport,
        skipped: u64,
    ) -> Result<(), StoreError> {
        // Most batches skip nothing: spare them the query.
        let skipped = if skipped == 0 { Vec::new() } else { skipped_items(&self.store, &header.batch_id).await? };
        self.store.record_consolidation(&header.trigger_message_id, report, &skipped).await
    }

    /// Logged once, by the instance that finished the batch, so one batch raises one alert.
    fn alert_if_low_coverage(&self, header: &BatchHeader) {
        let coverage = header.coverage.unwrap_or(1.0);
        let threshold = self.settings.coverage_alert_threshold;
        if !is_low_coverage(header.state, coverage, threshold) {
            return;
        }
        tracing::error!(
            marker = ALERT_LOW_COVERAGE,
            batch_id = header.batch_id,
            game_date = header.game_date,
            coverage,
            threshold,
            done = header.done_count.unwrap_or_default(),
            expected = header.expected_count,
            "{ALERT_LOW_COVERAGE}: batch completed with {:.1}% coverage, below the {:.1}% threshold",
            coverage * 100.0,
            threshold * 100.0
        );
        metrics::counter!(ALERTS_TOTAL, "alert" => "low_coverage").increment(1);
    }

    /// A claim owner per attempt, not per process: handlers of one process that see the last
    /// completions at once must not all consolidate.
    fn claim_owner(&self) -> String {
        format!("{}#{:08x}", self.instance_id, rand::random::<u32>())
    }

    /// Publishes the ready event of a COMPLETE batch and records it (the outbox).
    async fn announce(&self, header: &BatchHeader) -> Result<(), EngineError> {
        let game_date = header.game_date.parse().map_err(|_| EngineError::InvalidItem(header.game_date.clone()))?;
        let ready = ReadyMessage {
            game_date,
            batch_id: header.batch_id.clone(),
            generation: header.generation,
            predictions_count: header.predictions_count.unwrap_or_default(),
            failed_count: header.failed_count.unwrap_or_default(),
        };
        let message_id =
            self.pubsub.publish(&self.topics.ready_topic, Message::new().set_data(ready.to_json())).await?;
        self.store.record_ready(&header.batch_id, &message_id).await?;
        Ok(())
    }
}
