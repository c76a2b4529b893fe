//! One place that decides which Google API failures are worth retrying.

use std::time::Duration;

use google_cloud_gax::error::rpc::Code;
use thiserror::Error;

/// A failed call to Pub/Sub or Firestore, classified for the caller.
#[derive(Debug, Error)]
pub enum GcpError {
    /// The call did not answer within the configured timeout (unreachable endpoint, overloaded server).
    #[error("{operation} timed out after {}s: is the endpoint reachable?", .after.as_secs())]
    Timeout { operation: String, after: Duration },
    /// Could not build a client (credentials, endpoint).
    #[error("could not connect to {service}: {source}")]
    Connect {
        service: &'static str,
        #[source]
        source: anyhow::Error,
    },
    /// The server or transport reported an error.
    #[error("{operation} failed: {source}")]
    Pubsub {
        operation: String,
        #[source]
        source: google_cloud_pubsub::Error,
    },
    /// Publishing one message failed.
    #[error("publishing to {topic} failed: {source}")]
    Publish {
        topic: String,
        #[source]
        source: google_cloud_pubsub::error::PublishError,
    },
    /// A Firestore call failed.
    #[error("firestore {operation} failed: {source}")]
    Firestore {
        operation: String,
        #[source]
        source: Box<firestore::errors::FirestoreError>,
    },
}

impl GcpError {
    /// What retrying the call can do about this failure (see [`Retryability`]).
    pub fn retryability(&self) -> Retryability {
        match self {
            // The call may or may not have happened: only a repeat (idempotent by design) can tell.
            GcpError::Timeout { .. } => Retryability::Retry,
            // Credentials or endpoint the process was started with; retrying the message cannot fix them.
            GcpError::Connect { .. } => Retryability::Reject,
            GcpError::Pubsub { source, .. } => classify_pubsub(source),
            GcpError::Publish { source, .. } => match source {
                google_cloud_pubsub::error::PublishError::Rpc(inner) => classify_pubsub(inner),
                // Shutdown or a paused ordering key: the message was not published; retrying in a
                // fresh process (redelivery) is the right recovery.
                _ => Retryability::Retry,
            },
            GcpError::Firestore { source, .. } => classify_firestore(source),
        }
    }

    /// Whether trying again later may succeed: `self.retryability() == Retryability::Retry`.
    pub fn is_transient(&self) -> bool {
        self.retryability() == Retryability::Retry
    }

    /// The gRPC status code, when the server answered with one.
    pub fn code(&self) -> Option<Code> {
        match self {
            GcpError::Pubsub { source, .. } => source.status().map(|s| s.code),
            _ => None,
        }
    }
}

/// What retrying can do about a failed call. The one classification every role uses.
///
/// `Retry` covers what a later attempt may fix *and* what left the outcome unknown: a timeout (the
/// client's or the server's), a reset or closed connection, UNAVAILABLE, INTERNAL, UNKNOWN, CANCELLED,
/// RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED, ABORTED, a denied permission (an operator's fix, not the
/// message's fault), and any commit error but a failed precondition. A commit whose answer was lost
/// may have been applied, so every handler is idempotent: the repeat finds its own effect and does
/// nothing. `Reject` is only for what no retry can change: bad input, or a decision the store already
/// made (ALREADY_EXISTS, FAILED_PRECONDITION, NOT_FOUND).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retryability {
    Retry,
    Reject,
}

/// Classifies a gRPC status code.
pub fn classify_code(code: Code) -> Retryability {
    match code {
        Code::InvalidArgument
        | Code::NotFound
        | Code::AlreadyExists
        | Code::FailedPrecondition
        | Code::OutOfRange
        | Code::Unimplemented
        | Code::DataLoss => Retryability::Reject,
        // Cancelled, Unknown, DeadlineExceeded, PermissionDenied, ResourceExhausted, Aborted, Internal,
        // Unavailable, Unauthenticated, and codes added later: the server or the path to it, not the
        // request, is at fault (or the outcome is unknown).
        _ => Retryability::Retry,
    }
}

/// Classifies a Pub/Sub client error by its status code; without one the request never got an
/// answer (reset, timeout, I/O), which is outcome-unknown.
pub fn classify_pubsub(error: &google_cloud_pubsub::Error) -> Retryability {
    match error.status().map(|s| s.code) {
        Some(code) => classify_code(code),
        // A request the client could not even build or decode is bad input.
        None if error.is_binding() || error.is_serialization() || error.is_deserialization() => Retryability::Reject,
        None => Retryability::Retry,
    }
}

/// Classifies a Firestore error by the gRPC code or transport failure underneath it.
///
/// firestore-rs marks every commit error but ABORTED `retry_possible = false` (its `transaction.rs`:
/// "the writes may already be applied"), and a server's DEADLINE_EXCEEDED as not retryable either.
/// That flag answers "may the crate re-run this transaction by itself", not "may the message be
/// retried", so it is ignored here: the code it carries is what counts.
pub fn classify_firestore(error: &firestore::errors::FirestoreError) -> Retryability {
    use firestore::errors::FirestoreError as E;
    match error {
        E::DatabaseError(e) => classify_code_name(&e.public.code),
        // Transport trouble (the crate's own stream errors, connection set-up, I/O) and cache misses.
        E::NetworkError(_) | E::SystemError(_) | E::CacheError(_) => Retryability::Retry,
        // ALREADY_EXISTS and NOT_FOUND: the store decided.
        E::DataConflictError(_) | E::DataNotFoundError(_) => Retryability::Reject,
        E::InvalidParametersError(_) | E::SerializeError(_) | E::DeserializeError(_) => Retryability::Reject,
        // A transaction closure's own error: what it wraps decides. Closures return Firestore errors;
        // anything else is treated as outcome-unknown.
        E::ErrorInTransaction(e) => match e.source.downcast_ref::<firestore::errors::FirestoreError>() {
            Some(inner) => classify_firestore(inner),
            None => Retryability::Retry,
        },
    }
}

/// firestore-rs names the status code with `tonic::Code`'s `Debug` text (`"Unavailable"`), or with its
/// own names for a connection closed, timed out or failed (`CONNECTION_CLOSED`, ...). A name this
/// table does not know came from the transport, so it is outcome-unknown.
fn classify_code_name(name: &str) -> Retryability {
    let code = match name {
        "InvalidArgument" => Code::InvalidArgument,
        "NotFound" => Code::NotFound,
        "AlreadyExists" => Code::AlreadyExists,
        "FailedPrecondition" => Code::FailedPrecondition,
        "OutOfRange" => Code::OutOfRange,
        "Unimplemented" => Code::Unimplemented,
        "DataLoss" => Code::DataLoss,
        _ => return Retryability::Retry,
    };
    classify_code(code)
}

/// Whether a create-only write failed because the document exists (ALREADY_EXISTS; some servers answer
/// FAILED_PRECONDITION for a failed `exists: false` precondition).
pub fn is_already_exists(error: &firestore::errors::FirestoreError) -> bool {
    use firestore::errors::FirestoreError as E;
    match error {
        E::DataConflictError(_) => true,
        E::DatabaseError(e) => e.public.code == "FailedPrecondition",
        _ => false,
    }
}

/// Runs `future` with a deadline, turning expiry into [`GcpError::Timeout`].
pub async fn with_timeout<T>(
    operation: impl Into<String>,
    after: Duration,
    future: impl Future<Output = Result<T, GcpError>>,
) -> Result<T, GcpError> {
    tokio::time::timeout(after, future)
        .await
        .unwrap_or_else(|_| Err(GcpError::Timeout { operation: operation.into(), after }))
}

#[cfg(test)]
mod tests {
    use firestore::errors::{
        FirestoreDataConflictError, FirestoreDatabaseError, FirestoreError, FirestoreErrorInTransaction,
        FirestoreErrorPublicGenericDetails, FirestoreNetworkError,
    };
    use google_cloud_gax::error::rpc::Status;

    use super::*;
    use Retryability::{Reject, Retry};

    /// A Firestore error as firestore-rs builds it from a status: `retry_possible` as its commit sets it.
    fn database(code: &str, retry_possible: bool) -> FirestoreError {
        FirestoreError::DatabaseError(FirestoreDatabaseError {
            public: FirestoreErrorPublicGenericDetails { code: code.into() },
            details: format!("{code} (test)"),
            retry_possible,
        })
    }

    #[test]
    fn server_side_and_outcome_unknown_codes_retry_and_bad_input_or_decided_ones_reject() {
        for code in [
            Code::Unavailable,
            Code::Internal,
            Code::Unknown,
            Code::Cancelled,
            Code::ResourceExhausted,
            Code::DeadlineExceeded,
            Code::Aborted,
            Code::PermissionDenied,
            Code::Unauthenticated,
        ] {
            assert_eq!(classify_code(code), Retry, "{code:?}");
        }
        for code in [
            Code::InvalidArgument,
            Code::NotFound,
            Code::AlreadyExists,
            Code::FailedPrecondition,
            Code::OutOfRange,
            Code::Unimplemented,
        ] {
            assert_eq!(classify_code(code), Reject, "{code:?}");
        }
    }

    #[test]
    fn a_commit_error_retries_whatever_retry_possible_says_except_a_failed_precondition() {
        // Commit answers firestore-rs marks `retry_possible = false`: the writes may have been applied.
        for code in ["Unavailable", "Internal", "DeadlineExceeded", "Unknown", "Cancelled", "ResourceExhausted"] {
            assert_eq!(classify_firestore(&database(code, false)), Retry, "{code}");
        }
        assert_eq!(classify_firestore(&database("Aborted", true)), Retry);
        assert_eq!(classify_firestore(&database("FailedPrecondition", false)), Reject);
        assert_eq!(classify_firestore(&database("InvalidArgument", false)), Reject);
        // A flag set on an answer that can never succeed does not make it retryable either.
        assert_eq!(classify_firestore(&database("InvalidArgument", true)), Reject);
    }

    #[test]
    fn a_reset_connection_or_goaway_retries() {
        // check_hyper_errors' names for a closed, timed-out or failed connection, and an h2 GoAway
        // that surfaces as UNKNOWN or INTERNAL.
        for code in ["CONNECTION_CLOSED", "CONNECTION_TIMEOUT", "CONNECTION_ERROR", "Unknown", "Internal"] {
            assert_eq!(classify_firestore(&database(code, false)), Retry, "{code}");
        }
        let network = FirestoreError::NetworkError(FirestoreNetworkError {
            public: FirestoreErrorPublicGenericDetails { code: "SEND_STREAM_ERROR".into() },
            message: "stream closed".into(),
        });
        assert_eq!(classify_firestore(&network), Retry);
    }

    #[test]
    fn a_decision_already_made_rejects() {
        let exists = FirestoreError::DataConflictError(FirestoreDataConflictError {
            public: FirestoreErrorPublicGenericDetails { code: "AlreadyExists".into() },
            details: "document exists".into(),
        });
        assert_eq!(classify_firestore(&exists), Reject);
    }

    #[test]
    fn a_transaction_error_is_classified_by_what_it_wraps() {
        let wrap = |inner: FirestoreError| {
            FirestoreError::ErrorInTransaction(FirestoreErrorInTransaction {
                transaction_id: vec![1, 2, 3],
                source: Box::new(inner),
            })
        };
        assert_eq!(classify_firestore(&wrap(database("Unavailable", false))), Retry);
        assert_eq!(classify_firestore(&wrap(database("InvalidArgument", false))), Reject);
        assert_eq!(
            classify_firestore(&wrap(wrap(database("Internal", false)))),
            Retry,
            "nested wrappers are looked through"
        );
        let other = FirestoreError::ErrorInTransaction(FirestoreErrorInTransaction {
            transaction_id: vec![],
            source: Box::new(std::io::Error::other("closure's own error")),
        });
        assert_eq!(classify_firestore(&other), Retry);
    }

    #[test]
    fn pubsub_errors_are_classified_by_status_or_by_what_kept_the_answer_away() {
        let status = |code: Code| google_cloud_pubsub::Error::service(Status::default().set_code(code));
        assert_eq!(classify_pubsub(&status(Code::Internal)), Retry);
        assert_eq!(classify_pubsub(&status(Code::Unavailable)), Retry);
        assert_eq!(classify_pubsub(&status(Code::InvalidArgument)), Reject);
        assert_eq!(classify_pubsub(&google_cloud_pubsub::Error::io("connection reset by peer")), Retry);
        assert_eq!(classify_pubsub(&google_cloud_pubsub::Error::timeout("elapsed")), Retry);
        assert_eq!(classify_pubsub(&google_cloud_pubsub::Error::binding("no such path")), Reject);
    }

    #[test]
    fn gcp_errors_use_the_same_classification() {
        let timeout = GcpError::Timeout { operation: "commit".into(), after: Duration::from_secs(20) };
        assert_eq!(timeout.retryability(), Retry);
        assert!(timeout.is_transient());
        let commit =
            GcpError::Firestore { operation: "sealing".into(), source: Box::new(database("Unavailable", false)) };
        assert!(commit.is_transient());
        let bad = GcpError::Firestore { operation: "x".into(), source: Box::new(database("InvalidArgument", false)) };
        assert!(!bad.is_transient());
    }
}
