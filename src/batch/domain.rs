//! How a domain plugs into the engine: list the items of a key, handle one item, and (optionally) act
//! on a finished batch before it is published. The engine calls these; it never looks inside items or
//! results.

use std::collections::HashMap;

use firestore::FirestoreDb;
use firestore::errors::FirestoreError;
use firestore::gcloud_sdk::google::firestore::v1::Document;
use thiserror::Error;

use super::documents::BatchHeader;
use crate::messages::{GameDate, RequestMessage};

/// A domain failure, classified for the engine.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum DomainError {
    /// Worth another try later (storage unavailable, timeout).
    #[error("transient: {0}")]
    Transient(String),
    /// Retrying cannot help (bad data, missing input).
    #[error("permanent: {0}")]
    Permanent(String),
}

/// What a consolidation changed, for the audit trail. Counts describe the state after the call, not
/// the writes of this call, so a re-run after a crash or a lease takeover reports the same numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConsolidationReport {
    /// Older results of the key marked superseded by this batch's generation.
    pub superseded: u64,
    /// Results of this batch that are now current (the replacements).
    pub replacements: u64,
}

/// The coordinator's side of a domain.
pub trait BatchDomain: Send + Sync + 'static {
    /// The items of the batch for `game_date`, as Firestore document ids. An empty list is an empty
    /// batch, which completes at once.
    fn list_items(&self, game_date: GameDate) -> impl Future<Output = Result<Vec<String>, DomainError>> + Send;

    /// The version of what will handle the items of `game_date` (a model and its parameters, say).
    /// The engine records it on the batch header when it creates the batch, so a new version shows as
    /// a new batch, not as silently different results. `None` (the default): the domain has none.
    fn model_version(&self, game_date: GameDate) -> impl Future<Output = Result<Option<String>, DomainError>> + Send {
        let _ = game_date;
        async { Ok(None) }
    }

    /// Extra work before a batch is published, for a domain whose readers do not follow the date's
    /// pointer (say, a copy of the results into another store). The engine publishes a batch by
    /// flipping `game_dates/{date}.published_batch_id` to it in the commit that makes it COMPLETE; its
    /// results stay where the workers staged them, so a domain whose readers follow the pointer has
    /// nothing to do (the default, `None`: the engine reports the batch's done items as the
    /// replacements and the previously published batch's as superseded). Called by the finalize claim
    /// holder, again after a crash or a lease takeover, so it must be idempotent; a permanent error
    /// fails the batch and the pointer stays.
    fn consolidate(
        &self,
        batch: &BatchHeader,
    ) -> impl Future<Output = Result<Option<ConsolidationReport>, DomainError>> + Send {
        let _ = batch;
        async { Ok(None) }
    }
}

/// What handling one item came to; `R` is the domain's result document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemOutcome<R> {
    /// The item's result, to be stored in `batches/{batch_id}/results/{item}` by the engine in the
    /// same commit that marks the item done; `results_count` results in it.
    Done { result: R, results_count: u64 },
    /// The item can never succeed (recorded as failed, not retried).
    Failed(String),
    /// The domain declines the item for this reason (e.g. too little data to handle it): a terminal
    /// outcome that is not a failure. It does not count toward the failure policy; it lowers coverage.
    Skipped(String),
    /// Try again later (the request is nacked).
    Retry(String),
}

/// The documents an item's handler asked for ([`ItemHandler::input_documents`]), as the engine read
/// them with the item's marker: by full resource name; a document that does not exist is absent.
#[derive(Debug, Clone, Default)]
pub struct ItemInputs {
    documents: HashMap<String, Document>,
}

impl ItemInputs {
    pub fn new(documents: HashMap<String, Document>) -> Self {
        Self { documents }
    }

    /// The document named `name`, if it exists.
    pub fn document(&self, name: &str) -> Option<&Document> {
        self.documents.get(name)
    }

    /// The document named `name` decoded as `T`; `None` if it does not exist.
    pub fn decode<T: for<'de> serde::Deserialize<'de>>(&self, name: &str) -> Result<Option<T>, FirestoreError> {
        self.document(name).map(FirestoreDb::deserialize_doc_to).transpose()
    }
}

/// The worker's side of a domain.
pub trait ItemHandler: Send + Sync + 'static {
    /// A done item's result, stored in its marker (read back, e.g. by the domain's consolidation,
    /// with [`super::store::BatchStore::results`]).
    type Result: serde::Serialize + for<'de> serde::Deserialize<'de> + Send + Sync + 'static;

    /// The documents handling `request` reads, as full resource names
    /// (`projects/{p}/databases/{d}/documents/...`, see `FirestoreDb::get_documents_path`). The engine
    /// reads them in the same `BatchGetDocuments` as the item's marker, so an item costs one read
    /// request whatever it needs, and hands them to [`Self::handle_item`]. Default: none.
    fn input_documents(&self, request: &RequestMessage) -> Vec<String> {
        let _ = request;
        Vec::new()
    }

    /// Computes one item from `inputs` (what [`Self::input_documents`] named, as read) and returns its
    /// outcome; the engine records it (result, marker and count in one commit). Called at least once
    /// per item, and not again once the item is recorded, so it should write nothing itself.
    fn handle_item(
        &self,
        request: &RequestMessage,
        inputs: &ItemInputs,
    ) -> impl Future<Output = ItemOutcome<Self::Result>> + Send;
}
