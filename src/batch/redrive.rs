//! Redrive: re-publishing the requests of a RUNNING batch's pending items, when requests were lost
//! (acked without work, dead-lettered upstream, or withheld by a broken stream); resuming the fan-out of
//! a batch stuck in PUBLISHING; and putting one dead-lettered request back to work. Workers and
//! completions are idempotent, so a redundant redrive costs work, never correctness.

use firestore::FirestoreInstant;

use super::audit::AuditCounter;
use super::documents::{BatchHeader, ItemStatus};
use super::domain::BatchDomain;
use super::engine::{BatchEngine, CompletionReport, EngineError};
use super::state::BatchState;
use super::store::{ItemRedrive, StoreError};
use super::sweep_policy::{RedriveDecision, RedriveRequest};
use crate::messages::{CompletionMessage, ReadyMessage, RequestMessage};
use crate::ops::metrics::REDRIVES_TOTAL;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedriveReport {
    pub decision: RedriveDecision,
    /// Requests re-published (0 unless the decision was to redrive).
    pub republished: usize,
    /// The batch's redrive count after this call.
    pub redrive_count: u64,
}

impl<D: BatchDomain> BatchEngine<D> {
    /// Decides (in a transaction, so one replica wins) and performs a redrive of `batch_id`.
    pub async fn redrive(&self, batch_id: &str, request: RedriveRequest) -> Result<RedriveReport, EngineError> {
        let store = self.store();
        let Some(header) = store.header(batch_id).await? else {
            return Err(StoreError::UnknownBatch(batch_id.to_string()).into());
        };
        let activity = store.last_activity(&header).await?;
        self.redrive_after(batch_id, activity, request).await
    }

    /// [`Self::redrive`] for a caller that already read the batch's last activity (the sweeper needs it
    /// for its stuck check too).
    pub(crate) async fn redrive_after(
        &self,
        batch_id: &str,
        activity: FirestoreInstant,
        request: RedriveRequest,
    ) -> Result<RedriveReport, EngineError> {
        let store = self.store();
        let (decision, header) = store.claim_redrive(batch_id, request, activity).await?;
        if decision != RedriveDecision::Redrive {
            return Ok(RedriveReport { decision, republished: 0, redrive_count: header.redrive_count });
        }
        if header.state == BatchState::Publishing {
            return self.resume_publishing(&header).await.map(|republished| RedriveReport {
                decision,
                republished,
                redrive_count: header.redrive_count,
            });
        }
        // Pending is read after the claim, so items completed meanwhile are not redone.
        let pending = store.items_in(batch_id, ItemStatus::Pending).await?;
        self.publish_requests(&header, &header.correlation_id, &pending).await?;
        metrics::counter!(REDRIVES_TOTAL).increment(1);
        tracing::warn!(
            batch_id,
            game_date = header.game_date,
            generation = header.generation,
            redrive = header.redrive_count,
            pending = pending.len(),
            ?request,
            "re-published the pending requests of a stalled batch"
        );
        Ok(RedriveReport { decision, republished: pending.len(), redrive_count: header.redrive_count })
    }
}

impl<D: BatchDomain> BatchEngine<D> {
    /// Finishes the fan-out of a PUBLISHING batch whose coordinator is gone (died for good mid-fan-out,
    /// or its trigger ran out of delivery attempts): markers, the pending requests, the seal, and a
    /// finalize if every item is already in. The same steps a redelivered trigger takes, so a live
    /// coordinator doing them at the same time only duplicates requests, which workers absorb.
    async fn resume_publishing(&self, header: &BatchHeader) -> Result<usize, EngineError> {
        let game_date = header.game_date.parse().map_err(|_| EngineError::InvalidItem(header.game_date.clone()))?;
        let items = self.listed_items(game_date).await?;
        let (sealed, published) = self.fan_out(header, items, false).await?;
        metrics::counter!(REDRIVES_TOTAL).increment(1);
        tracing::warn!(
            batch_id = header.batch_id,
            game_date = header.game_date,
            generation = header.generation,
            redrive = header.redrive_count,
            published,
            state = %sealed.state,
            "resumed the fan-out of a batch stuck in PUBLISHING"
        );
        if let Err(error) =
            self.store().count_in_audit(&header.trigger_message_id, AuditCounter::PublishingResumes).await
        {
            tracing::warn!(batch_id = header.batch_id, %error, "could not count the resume in the audit record");
        }
        self.finalize_after_seal(&sealed.batch_id).await;
        Ok(published)
    }

    /// The dead-letter role's answer to a request that ran out of delivery attempts without any
    /// handler's verdict (an outage longer than its backoff, or the workers holding it were killed):
    /// put it back to work, counted against the item's redrive cap; only at the cap does the item fail.
    /// `cause` names the dead letter (its record id), so handling it twice counts one redrive.
    pub async fn redrive_item(
        &self,
        request: &RequestMessage,
        reason: &str,
        cause: &str,
    ) -> Result<ItemRedriveReport, EngineError> {
        let Some(header) = self.store().header(&request.batch_id).await? else {
            return Ok(ItemRedriveReport::Moot("the batch no longer exists".into()));
        };
        if header.generation != request.generation
            || !matches!(header.state, BatchState::Publishing | BatchState::Running)
        {
            return Ok(ItemRedriveReport::Moot(format!("the batch is {}", header.state)));
        }
        let max = self.settings().max_item_redrives;
        match self.store().count_item_redrive(&request.batch_id, &request.item, max, cause).await? {
            ItemRedrive::UnknownItem => Ok(ItemRedriveReport::Moot("the batch has no such item".into())),
            ItemRedrive::NotPending => Ok(ItemRedriveReport::Moot("the item was already terminal".into())),
            ItemRedrive::Repeated(redrive) => {
                self.publish_requests(&header, &request.correlation_id, std::slice::from_ref(&request.item)).await?;
                Ok(ItemRedriveReport::Redriven { redrive, max })
            }
            ItemRedrive::Counted(redrive) => {
                // Audited when counted: a publish that fails here is retried as a `Repeated` redrive.
                if let Err(error) =
                    self.store().count_in_audit(&header.trigger_message_id, AuditCounter::ItemRedrives).await
                {
                    tracing::warn!(batch_id = header.batch_id, %error, "could not count the redrive in the audit record");
                }
                self.publish_requests(&header, &request.correlation_id, std::slice::from_ref(&request.item)).await?;
                Ok(ItemRedriveReport::Redriven { redrive, max })
            }
            ItemRedrive::CapReached(redrives) => {
                let error = format!("dead-lettered: {reason}; redrive cap {redrives} reached");
                let failed = CompletionMessage::failed(request, &error);
                Ok(ItemRedriveReport::Failed(self.complete(&failed).await?))
            }
        }
    }
}

impl<D: BatchDomain> BatchEngine<D> {
    /// The dead-letter role's answer to a ready event that ran out of delivery attempts without a
    /// verdict (the exporter met only transient failures): announce the batch again, unless it is no
    /// longer the date's published batch. The exporter is idempotent, so a redundant announcement costs
    /// one export check. Returns what happened, for the dead-letter record.
    pub async fn reannounce(&self, ready: &ReadyMessage) -> Result<String, EngineError> {
        let Some(header) = self.store().header(&ready.batch_id).await? else {
            return Ok("nothing to do: the batch no longer exists".into());
        };
        let pointer = self.store().pointer(&header.game_date).await?;
        let published = pointer.and_then(|p| p.published_batch_id).is_some_and(|id| id == header.batch_id);
        if header.state != BatchState::Complete || !published {
            return Ok(format!("nothing to do: the batch is {} and not the date's published one", header.state));
        }
        if self.store().reopen_announcement(&ready.batch_id).await? {
            tracing::warn!(batch_id = ready.batch_id, "ready event out of delivery attempts; announcing again");
        }
        // Announces now (a batch whose ready event is not recorded is re-announced under a claim).
        self.finalize_if_whole(&ready.batch_id).await?;
        let announced = self.store().header(&ready.batch_id).await?.is_some_and(|h| h.ready_message_id.is_some());
        Ok(if announced {
            "ready event published again".into()
        } else {
            "announcement reopened; the sweeper publishes the ready event".into()
        })
    }
}

/// What [`BatchEngine::redrive_item`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum ItemRedriveReport {
    /// The request was published again: the item's `redrive`th of at most `max`.
    Redriven { redrive: u64, max: u64 },
    /// The item used its redrives and was marked failed through the completion path.
    Failed(CompletionReport),
    /// Nothing to do, and why.
    Moot(String),
}
