//! Backfill: one trigger per key (game date) over a range, at most K batches in flight, resumable.
//!
//! Resuming needs no state of its own. Each date's trigger carries a deterministic correlation id,
//! `backfill-{key}-{date}`, where the key hashes the range, mode and reason; the coordinator records
//! every trigger it sees under that correlation id (see [`super::audit`]). A (re-)run first looks up
//! the records of each date's correlation id and follows the batch found there instead of publishing.
//!
//! A run killed between publishing a trigger and the coordinator recording it leaves nothing to
//! find, so the re-run publishes that date again. The two triggers then carry one correlation id,
//! and the coordinator treats a trigger whose correlation id is that of the date's current batch as a
//! no-op naming that batch (in the same transaction that would create a batch), so whichever arrives
//! second creates nothing and the re-run follows the first one's batch.
//!
//! A run follows batches for up to an hour, so a failed Firestore read or trigger publish that a
//! retry can fix (the one classification in [`crate::gcp::errors`]) is retried with backoff for up to
//! [`PATIENCE`] instead of ending the run. A publish whose answer was lost may have stored the
//! trigger: the retry publishes it again under the same correlation id, which the coordinator treats
//! as a no-op naming the first one's batch, and the run follows that.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use google_cloud_pubsub::model::Message;
use serde::Serialize;
use thiserror::Error;
use tokio::time::Instant;

use super::audit::{AuditOutcome, AuditRecord};
use super::documents::fnv1a64;
use super::state::BatchState;
use super::status::{BatchStatus, one};
use super::store::{BatchStore, StoreError};
use crate::gcp::GcpError;
use crate::gcp::pubsub::PubSub;
use crate::messages::{GameDate, InvalidMessage, TriggerMessage, TriggerMode};

/// How long a call that keeps failing with errors a retry can fix is retried before the run gives up.
pub const PATIENCE: Duration = Duration::from_secs(300);

#[derive(Debug, Error)]
pub enum BackfillError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Publish(#[from] GcpError),
    #[error("invalid trigger: {0}")]
    Trigger(#[from] InvalidMessage),
}

impl BackfillError {
    /// Whether trying the same call again may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Store(error) => error.is_transient(),
            Self::Publish(error) => error.is_transient(),
            Self::Trigger(_) => false,
        }
    }
}

/// `call` until it succeeds, fails for good, or has failed transiently for [`PATIENCE`].
pub async fn patiently<T, E, F>(what: &str, call: impl FnMut() -> F) -> Result<T, BackfillError>
where
    E: Into<BackfillError>,
    F: Future<Output = Result<T, E>>,
{
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(15))
        .with_max_times(usize::MAX)
        .with_total_delay(Some(PATIENCE))
        .with_jitter();
    let mut call = call;
    let attempt = || {
        let pending = call();
        async move { pending.await.map_err(Into::into) }
    };
    attempt
        .retry(backoff)
        .when(BackfillError::is_transient)
        .notify(|error, after| tracing::warn!(%error, ?after, "backfill: {what} failed; retrying"))
        .await
}

/// What to backfill.
#[derive(Debug, Clone)]
pub struct BackfillPlan {
    pub from: GameDate,
    pub to: GameDate,
    pub mode: TriggerMode,
    pub reason: String,
    /// Every date of the range, in order, with whether it has input (a slate) to run.
    pub dates: Vec<(GameDate, bool)>,
    /// At most this many batches are running at once (at least 1).
    pub max_in_flight: usize,
    /// A date whose trigger is not recorded, or whose batch is not final, this long after this run
    /// began following it is reported as timed out (and no longer counts as in flight).
    pub timeout: Duration,
    pub poll: Duration,
}

impl BackfillPlan {
    /// Stable across runs and processes: the same range, mode and reason resume the same backfill.
    pub fn key(&self) -> String {
        let text = format!("{}\n{}\n{}\n{}", self.from, self.to, self.mode.as_str(), self.reason);
        format!("{:016x}", fnv1a64(text.as_bytes()))
    }

    pub fn correlation_id(&self, date: GameDate) -> String {
        format!("backfill-{}-{date}", self.key())
    }

    fn trigger(&self, date: GameDate) -> Result<TriggerMessage, InvalidMessage> {
        let metadata = serde_json::json!({"backfill": {"key": self.key(), "from": self.from, "to": self.to}});
        TriggerMessage::new(
            &date.to_string(),
            self.mode,
            self.reason.clone(),
            Some(&metadata.to_string()),
            self.correlation_id(date),
        )
    }
}

/// How a date of the backfill ended; serialized as its label (`COMPLETE`, `SKIPPED`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateEnd {
    /// The batch reached this final state.
    Batch(BatchState),
    /// No input for the date: nothing published.
    Skipped,
    /// The coordinator rejected the trigger.
    Rejected,
    /// Not recorded, or not final, within the timeout.
    TimedOut,
    /// The recorded batch no longer exists (deleted after its retention).
    Gone,
}

impl DateEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Batch(state) => state.as_str(),
            Self::Skipped => "SKIPPED",
            Self::Rejected => "REJECTED",
            Self::TimedOut => "TIMEOUT",
            Self::Gone => "GONE",
        }
    }

    /// A backfill succeeded when every date completed or had nothing to run.
    pub fn is_success(self) -> bool {
        matches!(self, Self::Batch(BatchState::Complete) | Self::Skipped)
    }
}

impl Serialize for DateEnd {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// One row of the final table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DateResult {
    pub game_date: GameDate,
    pub end: DateEnd,
    pub batch_id: Option<String>,
    pub generation: Option<u64>,
    pub done: Option<u64>,
    pub failed: Option<u64>,
    pub expected: Option<u64>,
    pub coverage: Option<f64>,
    /// Resumed from an earlier run, a no-op that followed another batch, a rejection reason.
    pub note: Option<String>,
}

impl DateResult {
    fn ended(game_date: GameDate, end: DateEnd, note: Option<String>) -> Self {
        Self {
            game_date,
            end,
            batch_id: None,
            generation: None,
            done: None,
            failed: None,
            expected: None,
            coverage: None,
            note,
        }
    }

    fn of_batch(game_date: GameDate, status: &BatchStatus, end: DateEnd, note: Option<String>) -> Self {
        Self {
            game_date,
            end,
            batch_id: Some(status.batch_id.clone()),
            generation: Some(status.generation),
            done: Some(status.done),
            failed: Some(status.failed),
            expected: Some(status.expected),
            coverage: status.coverage,
            note,
        }
    }
}

/// What a run reports as it goes.
#[derive(Debug, Clone, PartialEq)]
pub enum BackfillEvent {
    Published {
        game_date: GameDate,
        message_id: String,
    },
    /// A date settled (one per date).
    Settled(DateResult),
    /// The batches in flight after a poll: date, terminal items, expected items.
    InFlight(Vec<(GameDate, u64, u64)>),
}

/// Where a date is in this run.
#[derive(Debug, Clone, PartialEq)]
pub enum DateState {
    /// Not published yet.
    Waiting,
    /// Published by this run; waiting for the coordinator's record of `message_id`.
    Published {
        message_id: String,
        since: Instant,
    },
    /// Following `batch_id` to its final state.
    Following {
        batch_id: String,
        note: Option<String>,
        since: Instant,
    },
    Settled,
}

/// What the records of a date's trigger(s) say, in the order of preference: a batch a trigger created
/// (or, for a no-op, the batch that was active), else a rejection.
pub fn resolve(records: &[AuditRecord]) -> Option<DateState> {
    let now = Instant::now();
    if let Some(record) = records.iter().find(|r| r.batch_id.is_some()) {
        let batch_id = record.batch_id.clone().unwrap_or_default();
        return Some(DateState::Following { batch_id, note: None, since: now });
    }
    if let Some(record) = records.iter().find(|r| r.outcome == AuditOutcome::NoOp && r.active_batch_id.is_some()) {
        let batch_id = record.active_batch_id.clone().unwrap_or_default();
        let note = Some(format!("no-op: {}", record.detail.as_deref().unwrap_or("a batch was active")));
        return Some(DateState::Following { batch_id, note, since: now });
    }
    records.iter().any(|r| r.outcome == AuditOutcome::Rejected).then_some(DateState::Settled)
}

/// Runs (or resumes) the backfill until every date settled, reporting through `progress`.
pub async fn run(
    store: &BatchStore,
    pubsub: &PubSub,
    trigger_topic: &str,
    plan: &BackfillPlan,
    progress: &mut (dyn FnMut(BackfillEvent) + Send),
) -> Result<Vec<DateResult>, BackfillError> {
    let mut results: Vec<Option<DateResult>> = vec![None; plan.dates.len()];
    let mut states = Vec::with_capacity(plan.dates.len());
    for (index, (date, has_input)) in plan.dates.iter().enumerate() {
        let state = if !*has_input {
            let result = DateResult::ended(*date, DateEnd::Skipped, Some("no input (slate) for the date".into()));
            settle(&mut results, index, result, progress);
            DateState::Settled
        } else {
            let correlation_id = plan.correlation_id(*date);
            let records = patiently("reading the audit trail", || store.audit_records_for(&correlation_id)).await?;
            match resolve(&records) {
                Some(DateState::Settled) => {
                    settle(&mut results, index, rejected(*date, &records), progress);
                    DateState::Settled
                }
                Some(DateState::Following { batch_id, note, since }) => {
                    let note = Some(note.unwrap_or_else(|| "resumed: triggered by an earlier run".into()));
                    DateState::Following { batch_id, note, since }
                }
                _ => DateState::Waiting,
            }
        };
        states.push(state);
    }
    let max_in_flight = plan.max_in_flight.max(1);
    loop {
        let mut in_flight = Vec::new();
        for (index, state) in states.iter_mut().enumerate() {
            let date = plan.dates[index].0;
            match patiently("following a date", || poll(store, plan, date, state)).await? {
                Poll::Unchanged => {}
                Poll::Running { terminal, expected } => in_flight.push((date, terminal, expected)),
                Poll::Follow(next) => *state = next,
                Poll::Settle(result) => {
                    settle(&mut results, index, result, progress);
                    *state = DateState::Settled;
                }
            }
        }
        let mut running =
            states.iter().filter(|s| matches!(s, DateState::Published { .. } | DateState::Following { .. })).count();
        for (index, state) in states.iter_mut().enumerate() {
            if running >= max_in_flight {
                break;
            }
            if *state == DateState::Waiting {
                let date = plan.dates[index].0;
                let message = Message::new().set_data(plan.trigger(date)?.to_json());
                let message_id =
                    patiently("publishing a trigger", || pubsub.publish(trigger_topic, message.clone())).await?;
                progress(BackfillEvent::Published { game_date: date, message_id: message_id.clone() });
                *state = DateState::Published { message_id, since: Instant::now() };
                running += 1;
            }
        }
        if states.iter().all(|s| *s == DateState::Settled) {
            break;
        }
        progress(BackfillEvent::InFlight(in_flight));
        tokio::time::sleep(plan.poll).await;
    }
    // Every date settled, so every slot is filled.
    Ok(results.into_iter().flatten().collect())
}

/// What one poll of a date found.
enum Poll {
    Unchanged,
    /// Its batch is still running: terminal items of the expected.
    Running {
        terminal: u64,
        expected: u64,
    },
    /// The coordinator recorded the trigger: follow this batch.
    Follow(DateState),
    Settle(DateResult),
}

/// Looks at what Firestore says about a date now.
async fn poll(
    store: &BatchStore,
    plan: &BackfillPlan,
    date: GameDate,
    state: &DateState,
) -> Result<Poll, BackfillError> {
    let timeout = plan.timeout.as_secs();
    Ok(match state {
        DateState::Published { message_id, since } => {
            let records: Vec<AuditRecord> = store.audit_record(message_id).await?.into_iter().collect();
            match resolve(&records) {
                Some(DateState::Settled) => Poll::Settle(rejected(date, &records)),
                Some(DateState::Following { batch_id, note, .. }) => {
                    Poll::Follow(DateState::Following { batch_id, note, since: *since })
                }
                _ if since.elapsed() > plan.timeout => {
                    let note = format!("trigger {message_id} not recorded within {timeout}s");
                    Poll::Settle(DateResult::ended(date, DateEnd::TimedOut, Some(note)))
                }
                _ => Poll::Unchanged,
            }
        }
        DateState::Following { batch_id, note, since } => match one(store, batch_id).await? {
            None => {
                let note = Some(format!("batch {batch_id} no longer exists"));
                Poll::Settle(DateResult::ended(date, DateEnd::Gone, note))
            }
            Some(status) if status.state.is_final() => {
                Poll::Settle(DateResult::of_batch(date, &status, DateEnd::Batch(status.state), note.clone()))
            }
            Some(status) if since.elapsed() > plan.timeout => {
                let note = Some(format!("batch still {} after {timeout}s", status.state));
                Poll::Settle(DateResult::of_batch(date, &status, DateEnd::TimedOut, note))
            }
            Some(status) => Poll::Running { terminal: status.done + status.failed, expected: status.expected },
        },
        DateState::Waiting | DateState::Settled => Poll::Unchanged,
    })
}

fn rejected(date: GameDate, records: &[AuditRecord]) -> DateResult {
    let reason = records.iter().find_map(|r| r.detail.clone());
    DateResult::ended(date, DateEnd::Rejected, reason)
}

fn settle(
    results: &mut [Option<DateResult>],
    index: usize,
    result: DateResult,
    progress: &mut (dyn FnMut(BackfillEvent) + Send),
) {
    progress(BackfillEvent::Settled(result.clone()));
    results[index] = Some(result);
}

#[cfg(test)]
mod tests {
    use firestore::FirestoreInstant;

    use super::*;

    fn plan(reason: &str) -> BackfillPlan {
        BackfillPlan {
            from: "2023-05-01".parse().unwrap(),
            to: "2023-05-03".parse().unwrap(),
            mode: TriggerMode::Start,
            reason: reason.into(),
            dates: vec![],
            max_in_flight: 1,
            timeout: Duration::from_secs(60),
            poll: Duration::from_secs(1),
        }
    }

    fn record(outcome: AuditOutcome, batch_id: Option<&str>, active: Option<&str>) -> AuditRecord {
        let mut record = AuditRecord::rejected(b"{}", "m", "r");
        record.outcome = outcome;
        record.recorded_at = FirestoreInstant::now();
        record.batch_id = batch_id.map(String::from);
        record.active_batch_id = active.map(String::from);
        record
    }

    #[test]
    fn the_same_backfill_has_the_same_correlation_ids_and_another_reason_does_not() {
        let date: GameDate = "2023-05-02".parse().unwrap();
        assert_eq!(plan("r").correlation_id(date), plan("r").correlation_id(date));
        assert_ne!(plan("r").correlation_id(date), plan("other").correlation_id(date));
        let id = plan("r").correlation_id(date);
        assert!(id.starts_with("backfill-") && id.ends_with("-2023-05-02") && id.len() <= 128, "{id}");
        let trigger = plan("r").trigger(date).unwrap();
        assert_eq!((trigger.correlation_id, trigger.metadata["backfill"]["from"].as_str()), (id, Some("2023-05-01")));
    }

    #[test]
    fn records_resolve_to_the_batch_a_trigger_created_before_a_no_op_or_a_rejection() {
        assert_eq!(resolve(&[]), None);
        let follows = |records: &[AuditRecord]| match resolve(records) {
            Some(DateState::Following { batch_id, .. }) => batch_id,
            other => panic!("{other:?}"),
        };
        let started = record(AuditOutcome::Started, Some("b1"), None);
        let duplicate = record(AuditOutcome::NoOp, None, Some("b1"));
        let rejected = record(AuditOutcome::Rejected, None, None);
        assert_eq!(follows(&[duplicate.clone(), started.clone()]), "b1");
        assert_eq!(follows(&[duplicate]), "b1", "a duplicate publish follows the batch the first one created");
        assert_eq!(resolve(std::slice::from_ref(&rejected)), Some(DateState::Settled));
        assert_eq!(follows(&[rejected, started]), "b1");
    }

    #[tokio::test]
    async fn a_call_that_fails_transiently_is_retried_and_one_that_fails_for_good_is_not() {
        let mut calls = 0;
        let value = patiently("a flaky read", || {
            calls += 1;
            let outcome =
                if calls < 3 { Err(StoreError::BatchWriteFailed { code: 14, message: "x".into() }) } else { Ok(7) };
            async move { outcome }
        })
        .await;
        assert_eq!((value.unwrap(), calls), (7, 3));
        let mut calls = 0;
        let failed: Result<(), _> = patiently("a decided read", || {
            calls += 1;
            async { Err(StoreError::UnknownBatch("b".into())) }
        })
        .await;
        assert!(matches!(failed, Err(BackfillError::Store(StoreError::UnknownBatch(_)))));
        assert_eq!(calls, 1, "a permanent error is not retried");
    }

    #[test]
    fn only_complete_and_skipped_dates_are_a_success() {
        assert!(DateEnd::Batch(BatchState::Complete).is_success());
        assert!(DateEnd::Skipped.is_success());
        for end in [DateEnd::Batch(BatchState::Failed), DateEnd::Rejected, DateEnd::TimedOut, DateEnd::Gone] {
            assert!(!end.is_success(), "{end:?}");
        }
    }
}
