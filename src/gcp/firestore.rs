//! The Firestore handle, and the one read firestore-rs's fluent API lacks.
//!
//! firestore-rs reads `FIRESTORE_EMULATOR_HOST` from the environment only; the binary exports the
//! configured value before it starts its runtime (see `main.rs`), so this module just connects.

use std::collections::HashMap;
use std::time::Duration;

use firestore::errors::FirestoreError;
use firestore::gcloud_sdk::google::firestore::v1::{BatchGetDocumentsRequest, Document, batch_get_documents_response};
use firestore::gcloud_sdk::tonic;
use firestore::{FirestoreDb, FirestoreDbOptions};

use super::errors::GcpError;
use crate::config::GcpSettings;

/// Connects to the project's `(default)` database: the emulator when `FIRESTORE_EMULATOR_HOST` is set,
/// otherwise Firestore with Application Default Credentials.
pub async fn connect(settings: &GcpSettings) -> Result<FirestoreDb, GcpError> {
    let mut options = FirestoreDbOptions::new(settings.project.clone());
    options.request_timeout = Some(settings.rpc_timeout());
    FirestoreDb::with_options(options)
        .await
        .map_err(|source| GcpError::Connect { service: "Firestore", source: anyhow::Error::new(source) })
}

/// The id of a document: the last segment of its resource name.
pub fn document_id(document: &firestore::FirestoreDocument) -> &str {
    document.name.rsplit('/').next().unwrap_or_default()
}

/// Reads documents of any collections by full resource name (`projects/.../documents/...`) in one
/// `BatchGetDocuments`: one round trip, one read billed per name. firestore-rs batches gets only
/// within one collection, so the request is sent on its gRPC client, within the handle's RPC timeout
/// (a timeout is `DEADLINE_EXCEEDED`, transient). The answer holds the documents found, by name;
/// a missing one is left out. Not retried here: the caller's message is redelivered.
pub async fn batch_get(db: &FirestoreDb, names: Vec<String>) -> Result<HashMap<String, Document>, FirestoreError> {
    let timeout = db.get_options().request_timeout.unwrap_or(Duration::from_secs(60));
    tokio::time::timeout(timeout, batch_get_stream(db, names))
        .await
        .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("batch get timed out on the client")))
        .map_err(FirestoreError::from)
}

async fn batch_get_stream(db: &FirestoreDb, names: Vec<String>) -> Result<HashMap<String, Document>, tonic::Status> {
    let request = BatchGetDocumentsRequest {
        database: db.get_database_path().clone(),
        documents: names,
        mask: None,
        consistency_selector: None,
        request_options: None,
    };
    let mut client = db.client().get();
    let mut stream = client.batch_get_documents(request).await?.into_inner();
    let mut found = HashMap::new();
    while let Some(answer) = stream.message().await? {
        if let Some(batch_get_documents_response::Result::Found(document)) = answer.result {
            found.insert(document.name.clone(), document);
        }
    }
    Ok(found)
}
