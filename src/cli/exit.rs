//! One exit-code scheme for every command that waits on or names a batch (`trigger --wait`,
//! `status --watch`, `backfill`, and `status`/`missing`/`redrive` for an unknown batch), so a script can
//! tell how a wait ended. README.md "Exit codes" shows the same table.

use props_pipeline::batch::backfill::DateEnd;
use props_pipeline::batch::state::BatchState;
use props_pipeline::batch::status::BatchStatus;

/// Any other error (unreachable endpoint, invalid input, ...). clap itself exits 2 on a usage error.
pub const ERROR: u8 = 1;
/// The batch ended `FAILED`.
pub const FAILED: u8 = 3;
/// The batch ended `SUPERSEDED` by a newer generation.
pub const SUPERSEDED: u8 = 4;
/// Not final within the timeout.
pub const TIMED_OUT: u8 = 5;
/// Nothing started (the trigger was a no-op or rejected), or no such batch.
pub const NOT_STARTED: u8 = 6;

/// An error that ends the process with its own exit code (any other error exits [`ERROR`]).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Exit {
    pub code: u8,
    pub message: String,
}

impl Exit {
    pub fn new(code: u8, message: String) -> Self {
        Self { code, message }
    }

    /// `status`, `missing` and `redrive` of a batch id that does not exist.
    pub fn no_batch(batch_id: &str) -> Self {
        Self::new(NOT_STARTED, format!("no batch {batch_id} (`props-pipeline status` lists the recent ones)"))
    }
}

/// The exit code for an error `dispatch` returned.
pub fn code(error: &anyhow::Error) -> u8 {
    error.downcast_ref::<Exit>().map_or(ERROR, |exit| exit.code)
}

/// How a followed batch ended: `Ok` for COMPLETE, otherwise the exit that says why.
pub fn final_state(status: &BatchStatus) -> Result<(), Exit> {
    let batch_id = &status.batch_id;
    match status.state {
        BatchState::Complete => Ok(()),
        BatchState::Failed => Err(Exit::new(
            FAILED,
            format!(
                "batch {batch_id} FAILED: {} (`props-pipeline missing {batch_id}` lists the failed items and why)",
                status.failure_reason.as_deref().unwrap_or("no reason recorded")
            ),
        )),
        BatchState::Superseded => Err(Exit::new(
            SUPERSEDED,
            format!(
                "batch {batch_id} SUPERSEDED by {}",
                status.superseded_by.as_deref().unwrap_or("a newer generation")
            ),
        )),
        state => Err(Exit::new(ERROR, format!("batch {batch_id} is {state}, not final"))),
    }
}

/// The code of one backfill date; `None` when it succeeded.
pub fn for_date(end: DateEnd) -> Option<u8> {
    match end {
        DateEnd::Batch(BatchState::Complete) | DateEnd::Skipped => None,
        DateEnd::Batch(BatchState::Superseded) => Some(SUPERSEDED),
        DateEnd::Batch(_) => Some(FAILED),
        DateEnd::TimedOut => Some(TIMED_OUT),
        DateEnd::Rejected | DateEnd::Gone => Some(NOT_STARTED),
    }
}

/// A backfill exits with the lowest code among its dates that did not complete (FAILED first), 0 when
/// every date completed or was skipped.
pub fn for_backfill(ends: impl IntoIterator<Item = DateEnd>) -> Option<u8> {
    ends.into_iter().filter_map(for_date).min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backfill_reports_its_worst_date_failed_first() {
        let complete = DateEnd::Batch(BatchState::Complete);
        assert_eq!(for_backfill([complete, DateEnd::Skipped]), None);
        assert_eq!(for_backfill([DateEnd::TimedOut, DateEnd::Batch(BatchState::Failed)]), Some(FAILED));
        assert_eq!(for_backfill([DateEnd::TimedOut, DateEnd::Batch(BatchState::Superseded)]), Some(SUPERSEDED));
        assert_eq!(for_backfill([DateEnd::Rejected, complete, DateEnd::TimedOut]), Some(TIMED_OUT));
        assert_eq!(for_backfill([DateEnd::Gone]), Some(NOT_STARTED));
    }

    #[test]
    fn an_exit_keeps_its_code_and_any_other_error_exits_1() {
        assert_eq!(code(&anyhow::anyhow!("boom")), ERROR);
        assert_eq!(code(&Exit::new(TIMED_OUT, "late".into()).into()), TIMED_OUT);
    }
}
