//! Finalizing a batch exactly once: claim (a guarded header write), the domain's optional
//! consolidation, finish behind the generation fence (publishing the batch by flipping the date's
//! pointer in the same commit, see [`super::finish`]), announce (the ready outbox). A claim this attempt cannot see
//! through is released at once, so nobody waits out a lease no one works under.

use backon::{ExponentialBuilder, Retryable};

use super::documents::{BatchHeader, GameDatePointer};
use super::domain::{BatchDomain, ConsolidationReport, DomainError};
use super::engine::{ALERT_BATCH_FAILED, ALERT_LOW_COVERAGE, BatchEngine, EngineError, FinalizeReport};
use super::state::{BatchState, ClaimDecision, decide_claim, is_low_coverage, outcome};
use super::status::skipped_items;
use super::store::{FinishOutcome, FinishRead, StoreError, Totals};
use crate::messages::ReadyMessage;
use crate::ops::metrics::{ALERTS_TOTAL, FINALIZE_SECONDS};
use google_cloud_pubsub::model::Message;

/// How the ready event's record is retried: a few quick tries within about 3 s.
const RECORD_READY_RETRIES: ExponentialBuilder = ExponentialBuilder::new()
    .with_min_delay(std::time::Duration::from_millis(100))
    .with_max_delay(std::time::Duration::from_secs(2))
    .with_max_times(4)
    .with_jitter();

impl<D: BatchDomain> BatchEngine<D> {
    /// Finalizes `batch_id` if every item is terminal: claim, consolidate, fence, finish, announce.
    /// Safe to call any number of times from any instance.
    pub async fn finalize_if_whole(&self, batch_id: &str) -> Result<FinalizeReport, EngineError> {
        let Some(header) = self.store.header(batch_id).await? else {
            return Err(StoreError::UnknownBatch(batch_id.to_string()).into());
        };
        match header.state {
            BatchState::Publishing => return Ok(FinalizeReport::NotReady),
            BatchState::Complete => {
                let owner = self.claim_owner();
                if header.ready_message_id.is_none()
                    && self.store.claim_announcement(batch_id, &owner, self.settings.finalize_lease()).await?
                {
                    tracing::warn!(batch_id, "re-announcing a complete batch whose ready event was never recorded");
                    if let Err(error) = self.announce(&header).await {
                        // Not left under a live lease nobody works under: the next try announces at once.
                        self.release(batch_id, &owner).await;
                        return Err(error);
                    }
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
        let claim = match self.store.claim_finalize(batch_id, &owner, self.settings.finalize_lease(), totals).await {
            Ok(claim) => claim,
            Err(error) => {
                // The claim may have been written and only its answer lost: give it up, so that the
                // batch does not wait out a lease nobody works under.
                self.release(batch_id, &owner).await;
                return Err(error.into());
            }
        };
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
        // Registered until finished; a handler aborted at shutdown leaves it here for
        // `release_held_claims`.
        self.claims.hold(&owner, batch_id);
        let result = self.finish_claimed(claim.header, claim.version, &owner, totals).await;
        match &result {
            Ok(_) => self.claims.forget(&owner),
            Err(_) => self.release(batch_id, &owner).await,
        }
        result
    }

    /// The claim holder's part: consolidate (unless the batch will fail or was superseded), finish
    /// behind the fence, announce. `version` is the header's update time as the claim left it: with
    /// the pointer read here for the fence, the finish's first attempt reads nothing again.
    async fn finish_claimed(
        &self,
        header: BatchHeader,
        version: Option<firestore::FirestoreInstant>,
        owner: &str,
        totals: Totals,
    ) -> Result<FinalizeReport, EngineError> {
        let batch_id = header.batch_id.as_str();
        let claimed_at = std::time::Instant::now();
        // Consolidate only a batch that will complete: `finish` itself applies the failure policy
        // and supersedes a batch whose date pointer moved on.
        let will_fail = outcome(totals.failed, totals.skipped, header.expected_count, header.tolerated_failed_fraction)
            == BatchState::Failed;
        let pointer = self.store.versioned_pointer(&header.game_date).await?;
        let current = pointer.pointer.as_ref().is_some_and(|p| p.current_batch_id == header.batch_id);
        let failure_reason = if will_fail || !current {
            None
        } else {
            self.consolidate(&header, totals, pointer.pointer.as_ref()).await?
        };
        let read = FinishRead { header: version.map(|version| (header.clone(), version)), pointer: Some(pointer) };
        let finished = match self.store.finish(batch_id, owner, totals, failure_reason.as_deref(), read).await? {
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

    /// Runs the domain's consolidation, if it has one, and adds what publishing the batch changes to
    /// the audit record of its trigger: by default this batch's done items become current and the
    /// published batch's (`pointer`) are superseded. Returns the failure reason of a permanent
    /// consolidation error; a transient error is returned as an error, and the caller releases the
    /// claim so the redelivery takes over now rather than after the lease.
    async fn consolidate(
        &self,
        header: &BatchHeader,
        totals: Totals,
        pointer: Option<&GameDatePointer>,
    ) -> Result<Option<String>, EngineError> {
        let report = match self.domain.consolidate(header).await {
            Ok(Some(report)) => report,
            Ok(None) => ConsolidationReport {
                superseded: self.published_done_count(header, pointer).await?,
                replacements: totals.done,
            },
            Err(DomainError::Permanent(reason)) => return Ok(Some(format!("consolidation failed: {reason}"))),
            Err(transient) => return Err(transient.into()),
        };
        match self.audit_consolidation(header, &report, totals.skipped).await {
            Err(error) if !error.is_transient() => {
                // The results are in place; an audit that cannot be written must not block them.
                tracing::error!(batch_id = header.batch_id, %error, "could not audit the consolidation");
                Ok(None)
            }
            other => other.map(|()| None).map_err(EngineError::from),
        }
    }

    /// Done items of the batch the date's pointer publishes now (the ones `header` replaces).
    async fn published_done_count(
        &self,
        header: &BatchHeader,
        pointer: Option<&GameDatePointer>,
    ) -> Result<u64, EngineError> {
        let Some(published) = pointer.and_then(|p| p.published_batch_id.as_deref()) else {
            return Ok(0);
        };
        if published == header.batch_id {
            return Ok(0);
        }
        let previous = self.store.header(published).await?;
        Ok(previous.and_then(|h| h.done_count).unwrap_or_default())
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
            results_count: header.results_count.unwrap_or_default(),
            failed_count: header.failed_count.unwrap_or_default(),
        };
        let message_id =
            self.pubsub.publish(&self.topics.ready_topic, Message::new().set_data(ready.to_json())).await?;
        // Retried here, not by redelivery: once the event is out, a failed record means the next
        // attempt announces the batch a second time. The write is idempotent (it keeps a recorded id).
        let record = || self.store.record_ready(&header.batch_id, &message_id);
        record
            .retry(RECORD_READY_RETRIES)
            .when(StoreError::is_transient)
            .notify(|error, after| tracing::warn!(%error, ?after, "recording the ready event failed; retrying"))
            .await?;
        Ok(())
    }
}
