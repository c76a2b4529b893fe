//! A worker's one read per item: the item's marker with its version and the documents the domain
//! needs, in one `BatchGetDocuments` (one round trip; one read billed per document).

use firestore::FirestoreDb;
use firestore::gcloud_sdk::google::firestore::v1::Document;

use super::completion::{VersionedMarker, with_version};
use super::{BatchStore, StoreError, firestore_error};
use crate::batch::documents::{ITEMS, ItemMarker};
use crate::batch::domain::ItemInputs;
use crate::gcp::firestore::batch_get;

impl BatchStore {
    /// The marker of `item` in `batch_id` with its `update_time` (the version the worker's guarded
    /// commit compares against), and the documents named in `inputs` (full resource names), read
    /// together. `None` when the batch has no such item. A failed or timed-out read is a transient
    /// error (the request is redelivered).
    pub async fn item_with_inputs(
        &self,
        batch_id: &str,
        item: &str,
        inputs: Vec<String>,
    ) -> Result<Option<(VersionedMarker, ItemInputs)>, StoreError> {
        let marker_name = format!("{}/{ITEMS}/{item}", self.batch_path(batch_id)?);
        let mut names = vec![marker_name.clone()];
        names.extend(inputs.into_iter().filter(|name| *name != marker_name));
        let mut documents =
            batch_get(&self.db, names).await.map_err(firestore_error("reading an item and its inputs"))?;
        // The handler sees only what it asked for.
        let marker = versioned_marker_of(documents.remove(&marker_name).as_ref())?;
        Ok(marker.map(|marker| (marker, ItemInputs::new(documents))))
    }
}

/// The marker a read found, with its version; `None` if the document does not exist. A marker without
/// an `update_time` (never sent by the server) cannot guard a write: a transient error.
pub(crate) fn versioned_marker_of(document: Option<&Document>) -> Result<Option<VersionedMarker>, StoreError> {
    let Some(document) = document else {
        return Ok(None);
    };
    let marker: ItemMarker =
        FirestoreDb::deserialize_doc_to(document).map_err(firestore_error("decoding an item marker"))?;
    let version = document.update_time.and_then(|ts| firestore::timestamp_utils::from_timestamp(ts).ok());
    with_version(marker, version).map(Some)
}

#[cfg(test)]
mod tests {
    use firestore::gcloud_sdk::prost_types::Timestamp;

    use super::*;
    use crate::batch::documents::ItemStatus;

    const NAME: &str = "projects/p/databases/(default)/documents/batches/b/items/lebronjames";

    fn document(marker: &ItemMarker, update_time: Option<Timestamp>) -> Document {
        let mut document = FirestoreDb::serialize_to_doc(NAME, marker).expect("serialize a marker");
        document.update_time = update_time;
        document
    }

    #[test]
    fn a_missing_marker_is_none() {
        assert!(versioned_marker_of(None).unwrap().is_none());
    }

    #[test]
    fn a_marker_comes_with_its_update_time_as_its_version() {
        let mut marker = ItemMarker::pending();
        marker.shard = Some(7);
        let at = Timestamp { seconds: 1_780_000_000, nanos: 123_000 };
        let (read, version) = versioned_marker_of(Some(&document(&marker, Some(at)))).unwrap().unwrap();
        assert_eq!((read.status, read.shard), (ItemStatus::Pending, Some(7)));
        assert_eq!(version, firestore::timestamp_utils::from_timestamp(at).unwrap());
    }

    #[test]
    fn a_marker_without_update_time_cannot_guard_a_write_and_is_transient() {
        let error = versioned_marker_of(Some(&document(&ItemMarker::pending(), None))).unwrap_err();
        assert!(error.is_transient(), "{error}");
    }

    #[test]
    fn a_document_that_is_no_marker_is_a_decoding_error() {
        let mut document = document(&ItemMarker::pending(), Some(Timestamp::default()));
        document.fields.clear();
        assert!(versioned_marker_of(Some(&document)).is_err());
    }
}
