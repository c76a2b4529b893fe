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
    /// Whether trying again later may succeed. Timeouts, unavailability, aborted transactions and
    /// exhausted quota are transient; bad arguments, missing resources and permissions are not.
    pub fn is_transient(&self) -> bool {
        match self {
            GcpError::Timeout { .. } => true,
            GcpError::Connect { .. } => false,
            GcpError::Pubsub { source, .. } => is_transient_pubsub(source),
            GcpError::Publish { source, .. } => match source {
                google_cloud_pubsub::error::PublishError::Rpc(inner) => is_transient_pubsub(inner),
                // Shutdown or a paused ordering key: the message was not published; retrying in a
                // fresh process (redelivery) is the right recovery.
                _ => true,
            },
            GcpError::Firestore { source, .. } => is_transient_firestore(source),
        }
    }

    /// The gRPC status code, when the server answered with one.
    pub fn code(&self) -> Option<Code> {
        match self {
            GcpError::Pubsub { source, .. } => source.status().map(|s| s.code),
            _ => None,
        }
    }
}

pub fn is_transient_pubsub(error: &google_cloud_pubsub::Error) -> bool {
    match error.status().map(|s| s.code) {
        Some(code) => is_transient_code(code),
        // No status: the request never got an answer (connection reset, timeout, I/O).
        None => error.is_timeout() || error.is_io() || error.is_connect() || error.is_transport(),
    }
}

pub fn is_transient_code(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Aborted
            | Code::ResourceExhausted
            | Code::Internal
            | Code::Unknown
    )
}

pub fn is_transient_firestore(error: &firestore::errors::FirestoreError) -> bool {
    use firestore::errors::FirestoreError as E;
    match error {
        E::DatabaseError(e) => e.retry_possible,
        E::NetworkError(_) => true,
        _ => false,
    }
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
