//! What a worker reads for one player, in one request.
//!
//! A prediction needs three documents: the slate's header (league context), the player's slate entry
//! and the player's game logs. Three `GetDocument` calls cost three round trips; one
//! `BatchGetDocuments` with their full paths costs one (still three document reads on the bill).
//! firestore-rs batches gets only within one collection, so the request is sent on its gRPC client.

use std::collections::HashMap;
use std::time::Duration;

use firestore::FirestoreDb;
use firestore::errors::FirestoreError;
use firestore::gcloud_sdk::google::firestore::v1::{BatchGetDocumentsRequest, Document, batch_get_documents_response};
use firestore::gcloud_sdk::tonic;

use super::store::{PLAYER_LOGS, PlayerLogs, SLATE_PLAYERS, SLATES, SlateHeader, firestore_error};
use super::types::SlateEntry;
use crate::batch::store::StoreError;

/// The documents one prediction reads; `None` where a document does not exist.
#[derive(Debug, Default)]
pub struct WorkerInputs {
    pub slate: Option<SlateHeader>,
    pub entry: Option<SlateEntry>,
    pub logs: Option<PlayerLogs>,
}

/// Reads `slates/{date}`, `slates/{date}/players/{player}` and `player_logs/{player}` in one request,
/// within the handle's RPC timeout.
pub async fn worker_inputs(db: &FirestoreDb, date: &str, player: &str) -> Result<WorkerInputs, StoreError> {
    let root = db.get_documents_path();
    let slate_path = format!("{root}/{SLATES}/{date}");
    let entry_path = format!("{slate_path}/{SLATE_PLAYERS}/{player}");
    let logs_path = format!("{root}/{PLAYER_LOGS}/{player}");
    let timeout = db.get_options().request_timeout.unwrap_or(Duration::from_secs(60));
    let documents =
        tokio::time::timeout(timeout, batch_get(db, vec![slate_path.clone(), entry_path.clone(), logs_path.clone()]))
            .await
            .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("batch get timed out on the client")))
            .map_err(|status| firestore_error("reading a player's inputs")(FirestoreError::from(status)))?;
    Ok(WorkerInputs {
        slate: decode(&documents, &slate_path)?,
        entry: decode(&documents, &entry_path)?,
        logs: decode(&documents, &logs_path)?,
    })
}

/// The documents found, by resource name (missing ones are left out).
async fn batch_get(db: &FirestoreDb, paths: Vec<String>) -> Result<HashMap<String, Document>, tonic::Status> {
    let request = BatchGetDocumentsRequest {
        database: db.get_database_path().clone(),
        documents: paths,
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

fn decode<T: for<'de> serde::Deserialize<'de>>(
    documents: &HashMap<String, Document>,
    path: &str,
) -> Result<Option<T>, StoreError> {
    documents
        .get(path)
        .map(|document| FirestoreDb::deserialize_doc_to(document))
        .transpose()
        .map_err(firestore_error("decoding a player's inputs"))
}
