//! Running a Firestore transaction so that a commit with an unknown outcome never leaves locks behind.
//!
//! firestore-rs's `run_transaction` rolls back when the closure fails, but not when the commit fails:
//! the commit consumes the transaction, and an error other than ABORTED (a timeout, UNAVAILABLE, a
//! reset connection) leaves it open on the server with the locks its reads took. The emulator then
//! makes every later transaction on those documents wait ~2 s and abort with "Transaction lock
//! timeout" until it expires the orphan; under injected faults one faulted seal commit kept its batch's
//! header locked for over 100 s, and the trigger ran out of delivery attempts behind it. This runner
//! keeps the transaction id and rolls it back after such a commit error (harmless when the commit did
//! apply: the rollback then finds no transaction). The loop itself mirrors firestore-rs's: re-run the
//! closure on ABORTED or a transient closure error, at most [`MAX_RETRIES`] times with jittered backoff.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use firestore::errors::{BackoffError, FirestoreError};
use firestore::gcloud_sdk::google::firestore::v1::RollbackRequest;
use firestore::gcloud_sdk::tonic;
use firestore::{FirestoreConsistencySelector, FirestoreDb, FirestoreResult, FirestoreTransaction};
use futures::future::BoxFuture;

use crate::ops::metrics::TransactionAttempts;

/// Re-runs after ABORTED (lock contention) or a transient closure error; firestore-rs's default.
const MAX_RETRIES: usize = 4;

/// [`run_transaction`], counted: the transaction by `operation` and outcome in
/// `props_transactions_total`, and each re-run of its closure in `props_transaction_retries_total`.
/// A method on the handle, so call sites read like firestore-rs's own `run_transaction`.
pub(crate) trait CountedTransaction {
    fn counted_transaction<T, F>(&self, operation: &'static str, body: F) -> impl Future<Output = FirestoreResult<T>>
    where
        for<'b> F:
            Fn(FirestoreDb, &'b mut FirestoreTransaction) -> BoxFuture<'b, Result<T, BackoffError<FirestoreError>>>;
}

impl CountedTransaction for FirestoreDb {
    async fn counted_transaction<T, F>(&self, operation: &'static str, body: F) -> FirestoreResult<T>
    where
        for<'b> F:
            Fn(FirestoreDb, &'b mut FirestoreTransaction) -> BoxFuture<'b, Result<T, BackoffError<FirestoreError>>>,
    {
        let attempts = TransactionAttempts::new(operation);
        let result = run_transaction(self, &body, &attempts).await;
        attempts.finish(result)
    }
}

/// Runs `body` in a read-write transaction and commits it; see the module docs for what differs from
/// firestore-rs.
pub(crate) async fn run_transaction<T, F>(
    db: &FirestoreDb,
    body: &F,
    attempts: &TransactionAttempts,
) -> FirestoreResult<T>
where
    for<'b> F: Fn(FirestoreDb, &'b mut FirestoreTransaction) -> BoxFuture<'b, Result<T, BackoffError<FirestoreError>>>,
{
    let mut delays = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_secs(2))
        .with_max_times(MAX_RETRIES)
        .with_jitter()
        .build();
    loop {
        attempts.attempt();
        let error = match attempt(db, body).await {
            Ok(value) => return Ok(value),
            Err(Retry::No(error)) => return Err(error),
            Err(Retry::Yes(error)) => error,
        };
        match delays.next() {
            Some(delay) => tokio::time::sleep(delay).await,
            None => return Err(error),
        }
    }
}

enum Retry {
    Yes(FirestoreError),
    No(FirestoreError),
}

async fn attempt<T, F>(db: &FirestoreDb, body: &F) -> Result<T, Retry>
where
    for<'b> F: Fn(FirestoreDb, &'b mut FirestoreTransaction) -> BoxFuture<'b, Result<T, BackoffError<FirestoreError>>>,
{
    let mut transaction = db.begin_transaction().await.map_err(Retry::No)?;
    let id = transaction.transaction_id().clone();
    let reader = db.clone_with_consistency_selector(FirestoreConsistencySelector::Transaction(id.clone()));
    let value = match body(reader, &mut transaction).await {
        Ok(value) => value,
        Err(error) => {
            // Reads hold locks even without writes: release them now.
            transaction.rollback().await.ok();
            return Err(match error {
                BackoffError::Transient { err, .. } => Retry::Yes(err),
                BackoffError::Permanent(err) if is_aborted(&err) => Retry::Yes(err),
                BackoffError::Permanent(err) => Retry::No(err),
            });
        }
    };
    match transaction.commit().await {
        Ok(_) => Ok(value),
        // ABORTED: the server ended the transaction itself; run it again.
        Err(error) if is_aborted(&error) => Err(Retry::Yes(error)),
        Err(error) => {
            // Outcome unknown: the transaction may still be open on the server, holding its locks.
            rollback(db, id).await;
            Err(Retry::No(error))
        }
    }
}

fn is_aborted(error: &FirestoreError) -> bool {
    matches!(error, FirestoreError::DatabaseError(e) if e.public.code == "Aborted")
}

/// Best effort: a rollback that fails (the transaction committed, or expired, or the network is still
/// down) leaves nothing worse than before.
async fn rollback(db: &FirestoreDb, transaction: Vec<u8>) {
    let mut request = tonic::Request::new(RollbackRequest {
        database: db.get_database_path().clone(),
        transaction,
        request_options: None,
    });
    let timeout = db.get_options().request_timeout.unwrap_or(Duration::from_secs(10));
    request.set_timeout(timeout);
    let mut client = db.client().get();
    if let Ok(Err(status)) = tokio::time::timeout(timeout, client.rollback(request)).await {
        tracing::debug!(%status, "rolling back a transaction whose commit failed");
    }
}
