//! The sweeper role: a periodic pass over batches that have not settled, so that no batch hangs
//! silently. Safe in every coordinator replica at once: each action is a compare-and-set (finalize
//! claims, the redrive record) or idempotent (deletes).
//!
//! Per pass:
//! - RUNNING / FINALIZING: finalize if whole (an expired finalize lease is taken over there);
//!   a RUNNING batch idle past the stall threshold is redriven (capped);
//! - PUBLISHING idle past the stall threshold (its coordinator is gone): the fan-out is resumed
//!   (markers, pending requests, seal), under the same record and cap as a redrive;
//! - any unsettled batch idle past the stuck threshold (or out of redrives) raises ALERT_BATCH_STUCK;
//! - COMPLETE without a recorded ready event: announced again (after the announcer's lease);
//! - batches past `expire_at` are deleted with their subcollections, except the one its date publishes
//!   (renewed a day ahead instead);
//! - gauges: batches by state, stuck batches.

use std::sync::Arc;

use firestore::FirestoreInstant;
use tokio_util::sync::CancellationToken;

use super::documents::BatchHeader;
use super::domain::BatchDomain;
use super::engine::{BatchEngine, EngineError, FinalizeReport};
use super::state::BatchState;
use super::sweep_policy::{
    RENEW_PUBLISHED_BEFORE, RedriveDecision, RedriveRequest, Retention, SweepSettings, idle_for, is_stuck, retention,
};
use crate::ops::metrics::{ALERTS_TOTAL, BATCHES, STUCK_BATCHES};

/// Stable marker in the log line of a stuck batch, for log-based alerts.
pub const ALERT_BATCH_STUCK: &str = "ALERT_BATCH_STUCK";

/// Expired batches deleted per pass, so one pass stays short after a long outage.
const MAX_DELETIONS_PER_PASS: u32 = 20;

const ALL_STATES: [BatchState; 6] = [
    BatchState::Publishing,
    BatchState::Running,
    BatchState::Finalizing,
    BatchState::Complete,
    BatchState::Failed,
    BatchState::Superseded,
];

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub examined: usize,
    pub finalized: usize,
    pub redriven: usize,
    pub stuck: Vec<String>,
    pub announced: usize,
    pub deleted: usize,
    pub errors: usize,
}

impl SweepReport {
    fn acted(&self) -> bool {
        self.finalized + self.redriven + self.stuck.len() + self.announced + self.deleted + self.errors > 0
    }
}

pub struct Sweeper<D> {
    engine: Arc<BatchEngine<D>>,
    settings: SweepSettings,
}

impl<D: BatchDomain> Sweeper<D> {
    pub fn new(engine: Arc<BatchEngine<D>>, settings: SweepSettings) -> Self {
        Self { engine, settings }
    }

    /// Sweeps every interval until `shutdown`; a pass in progress stops between batches.
    pub async fn run(self, shutdown: CancellationToken) {
        // A random first delay spreads replicas that started together over the interval.
        let first = self.settings.interval().mul_f64(rand::random::<f64>());
        let mut next = tokio::time::Instant::now() + first;
        tracing::info!(interval_secs = self.settings.sweep_interval_secs, "sweeper started");
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep_until(next) => {}
            }
            let report = self.sweep_once(&shutdown).await;
            if report.acted() {
                tracing::info!(?report, "sweep");
            } else {
                tracing::debug!(?report, "sweep");
            }
            next = tokio::time::Instant::now() + self.settings.interval();
        }
        tracing::info!("sweeper stopped");
    }

    /// One pass. Errors are counted and logged, never fatal: the next pass tries again.
    pub async fn sweep_once(&self, shutdown: &CancellationToken) -> SweepReport {
        let mut report = SweepReport::default();
        let store = self.engine.store();
        match store.batches_in(&[BatchState::Publishing, BatchState::Running, BatchState::Finalizing]).await {
            Ok(unsettled) => {
                for header in unsettled {
                    if shutdown.is_cancelled() {
                        return report;
                    }
                    report.examined += 1;
                    if let Err(error) = self.sweep_batch(&header, &mut report).await {
                        report.errors += 1;
                        tracing::warn!(batch_id = header.batch_id, %error, "sweeping a batch failed; next pass retries");
                    }
                }
            }
            Err(error) => {
                report.errors += 1;
                tracing::warn!(%error, "listing unsettled batches failed");
            }
        }
        self.announce_complete(&mut report).await;
        self.delete_expired(&mut report, shutdown).await;
        self.publish_gauges(&report).await;
        report
    }

    async fn sweep_batch(&self, header: &BatchHeader, report: &mut SweepReport) -> Result<(), EngineError> {
        let batch_id = header.batch_id.as_str();
        if matches!(header.state, BatchState::Running | BatchState::Finalizing) {
            match self.engine.finalize_if_whole(batch_id).await {
                Ok(FinalizeReport::Finalized(_)) => {
                    report.finalized += 1;
                    return Ok(());
                }
                Ok(_) | Err(EngineError::ClaimHeld { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        let policy = self.settings.policy();
        let activity = self.engine.store().last_activity(header).await?;
        let mut redrive_count = header.redrive_count;
        // A RUNNING batch gets its pending requests again; a PUBLISHING one has its fan-out resumed.
        if matches!(header.state, BatchState::Running | BatchState::Publishing) {
            match self.engine.redrive_after(batch_id, activity, RedriveRequest::Sweeper(policy)).await {
                Ok(redrive) if redrive.decision == RedriveDecision::Redrive => {
                    report.redriven += 1;
                    return Ok(());
                }
                Ok(redrive) => redrive_count = redrive.redrive_count,
                // Retrying cannot help (the items changed under a PUBLISHING batch, say): a person
                // must look, so it counts as out of redrives for the stuck check below.
                Err(error) if !error.is_transient() => {
                    tracing::error!(batch_id, %error, "the batch cannot be redriven or resumed");
                    redrive_count = redrive_count.max(policy.max_redrives);
                }
                Err(error) => return Err(error),
            }
        }
        let idle = idle_for(activity, FirestoreInstant::now());
        if is_stuck(header.state, redrive_count, idle, &policy) {
            report.stuck.push(batch_id.to_string());
            metrics::counter!(ALERTS_TOTAL, "alert" => "batch_stuck").increment(1);
            tracing::error!(
                marker = ALERT_BATCH_STUCK,
                batch_id,
                game_date = header.game_date,
                generation = header.generation,
                state = %header.state,
                idle_secs = idle.as_secs(),
                redrives = redrive_count,
                "{ALERT_BATCH_STUCK}: batch has made no progress; see `props-pipeline missing {batch_id}`"
            );
        }
        Ok(())
    }

    /// COMPLETE batches whose ready event was never recorded: `finalize_if_whole` re-announces them
    /// once the announcer's lease has expired.
    async fn announce_complete(&self, report: &mut SweepReport) {
        let unannounced = match self.engine.store().unannounced_batches().await {
            Ok(headers) => headers,
            Err(error) => {
                report.errors += 1;
                tracing::warn!(%error, "listing unannounced batches failed");
                return;
            }
        };
        for header in unannounced {
            match self.engine.finalize_if_whole(&header.batch_id).await {
                Ok(_) => {
                    let after = self.engine.store().header(&header.batch_id).await;
                    if matches!(after, Ok(Some(h)) if h.ready_message_id.is_some()) {
                        report.announced += 1;
                    }
                }
                Err(error) => {
                    report.errors += 1;
                    tracing::warn!(batch_id = header.batch_id, %error, "re-announcing failed");
                }
            }
        }
    }

    /// Deletes batches past retention, except the ones their date's pointer publishes: those are
    /// renewed a day before they would expire, so neither this pass nor a TTL policy removes the
    /// date's current predictions.
    async fn delete_expired(&self, report: &mut SweepReport, shutdown: &CancellationToken) {
        let store = self.engine.store();
        let now = FirestoreInstant::now();
        let horizon = now.saturating_add(RENEW_PUBLISHED_BEFORE).unwrap_or(now);
        let expiring = match store.expiring_batches(horizon, MAX_DELETIONS_PER_PASS).await {
            Ok(headers) => headers,
            Err(error) => {
                report.errors += 1;
                tracing::warn!(%error, "listing expiring batches failed");
                return;
            }
        };
        for header in expiring {
            if shutdown.is_cancelled() {
                return;
            }
            let batch_id = header.batch_id.as_str();
            let published = match store.pointer(&header.game_date).await {
                Ok(pointer) => pointer.and_then(|p| p.published_batch_id).is_some_and(|id| id == batch_id),
                Err(error) => {
                    report.errors += 1;
                    tracing::warn!(batch_id, %error, "reading the date pointer before retention failed");
                    continue;
                }
            };
            let result = match retention(header.expire_at, now, published) {
                Retention::Keep => continue,
                Retention::Renew => store.renew_retention(batch_id, now).await.map(|()| {
                    tracing::info!(batch_id, "renewed the retention of a published batch");
                }),
                Retention::Delete => store.delete_batch(batch_id).await.map(|documents| {
                    report.deleted += 1;
                    tracing::info!(batch_id, documents, "deleted a batch past its retention");
                }),
            };
            if let Err(error) = result {
                report.errors += 1;
                tracing::warn!(batch_id, %error, "retention of a batch failed");
            }
        }
    }

    async fn publish_gauges(&self, report: &SweepReport) {
        for state in ALL_STATES {
            match self.engine.store().count_in(state).await {
                Ok(count) => metrics::gauge!(BATCHES, "state" => state.as_str()).set(count as f64),
                Err(error) => tracing::debug!(%error, %state, "counting batches failed"),
            }
        }
        metrics::gauge!(STUCK_BATCHES).set(report.stuck.len() as f64);
    }
}
