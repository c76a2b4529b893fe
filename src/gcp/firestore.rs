//! The Firestore handle.
//!
//! firestore-rs reads `FIRESTORE_EMULATOR_HOST` from the environment only; the binary exports the
//! configured value before it starts its runtime (see `main.rs`), so this module just connects.

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
