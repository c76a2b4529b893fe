//! Redrive: re-publishing the requests of a RUNNING batch's pending items, when requests were lost
//! (acked without work, dead-lettered upstream, or withheld by a broken stream). Workers and completions
//! are idempotent, so a redundant redrive costs work, never correctness.

use firestore::FirestoreInstant;

use super::documents::ItemStatus;
use super::domain::BatchDomain;
use super::engine::{BatchEngine, EngineError};
use super::store::StoreError;
use super::sweep_policy::{RedriveDecision, RedriveRequest};
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
