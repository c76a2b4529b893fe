//! One atomic commit of several writes, outside any transaction.
//!
//! Firestore's `Commit` applies all its writes or none even without a transaction, and each write may
//! carry a precondition. A read followed by such a commit, guarded by the read document's
//! `update_time`, decides like a transaction but holds no lock: a racing writer makes it fail at once
//! with FAILED_PRECONDITION instead of waiting (the emulator takes ~2 s to resolve a lock conflict, and
//! under faults those waits were what exhausted delivery attempts). firestore-rs sends `Commit` only
//! from a transaction (`BeginTransaction` first), so the request is sent here on its gRPC client.

use firestore::errors::FirestoreError;
use firestore::gcloud_sdk::google::firestore::v1::{CommitRequest, WriteResult};
use firestore::gcloud_sdk::tonic;
use firestore::{FirestoreDb, FirestoreResult, FirestoreTransactionData, FirestoreTransactionId};

/// Writes staged for one [`commit_atomically`]; the firestore-rs builders add to it with
/// `.add_to_transaction(&mut writes)`.
pub(crate) fn staged_writes(db: &FirestoreDb) -> FirestoreTransactionData {
    FirestoreTransactionData::new(
        FirestoreTransactionId::new(),
        db.get_documents_path().clone(),
        tracing::Span::none(),
        Vec::new(),
    )
}

/// Commits `writes` atomically in one request, within the handle's RPC timeout, and answers each write's
/// result in order (with its transforms' values after they applied). Errors are firestore-rs
/// errors, classified like any other (a failed precondition is the lost race; a timeout or an unknown
/// outcome is retried, and the retry reads what did happen).
pub(crate) async fn commit_atomically(
    db: &FirestoreDb,
    writes: FirestoreTransactionData,
) -> FirestoreResult<Vec<WriteResult>> {
    let mut request = tonic::Request::new(CommitRequest {
        database: db.get_database_path().clone(),
        writes: writes.writes().clone(),
        transaction: Vec::new(),
        request_options: None,
    });
    let timeout = db.get_options().request_timeout;
    if let Some(timeout) = timeout {
        request.set_timeout(timeout);
    }
    let mut client = db.client().get();
    let call = client.commit(request);
    let answer = match timeout {
        Some(timeout) => tokio::time::timeout(timeout, call)
            .await
            .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("commit timed out on the client"))),
        None => call.await,
    };
    answer.map(|response| response.into_inner().write_results).map_err(FirestoreError::from)
}
