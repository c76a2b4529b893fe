//! Items' results. The recording commit writes a done item's result into its marker
//! (`batches/{id}/items/{item}`, field `result`), so that a done item is one document, not two.
//! Batches recorded before kept each result in a document of its own, `batches/{id}/results/{item}`,
//! and a worker of that version may still write one there during a rolling deploy: readers take the
//! union of both, in item order, so no result is missed whichever version recorded it.

use std::cmp::Ordering;

use firestore::gcloud_sdk::google::firestore::v1::Document;
use firestore::gcloud_sdk::google::firestore::v1::value::ValueType;
use firestore::{FirestoreDb, FirestoreQueryCursor, FirestoreValue};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{BatchStore, StoreError, firestore_error};
use crate::batch::documents::{ITEMS, ItemMarker, RESULT, RESULTS};
use crate::gcp::firestore::document_id;

/// Results one page of [`BatchStore::results`] reads.
const RESULTS_PAGE: u32 = 500;

/// A done item's marker with its result: one document, written by one update in the recording commit.
#[derive(Serialize)]
pub(super) struct MarkerWithResult<'a, T> {
    #[serde(flatten)]
    pub marker: &'a ItemMarker,
    pub result: &'a T,
}

impl BatchStore {
    /// One page of a batch's results with their item ids, in id order: at most `limit`, those after
    /// the id `after`. Paging by document id needs no composite index (an equality on `status`
    /// ordered by name is served by the automatic single-field index) and reads each result once.
    pub async fn results_page<T: DeserializeOwned>(
        &self,
        batch_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(String, T)>, StoreError> {
        self.result_documents_page(batch_id, after, limit)
            .await?
            .into_iter()
            .map(|(id, document)| {
                let result =
                    FirestoreDb::deserialize_doc_to::<T>(&document).map_err(firestore_error("decoding a result"))?;
                Ok((id, result))
            })
            .collect()
    }

    /// Every result of a batch with its item id, in id order, read page by page.
    pub async fn results<T: DeserializeOwned>(&self, batch_id: &str) -> Result<Vec<(String, T)>, StoreError> {
        let mut results: Vec<(String, T)> = Vec::new();
        loop {
            let after = results.last().map(|(id, _)| id.clone());
            let page = self.results_page(batch_id, after.as_deref(), RESULTS_PAGE).await?;
            let full = page.len() == RESULTS_PAGE as usize;
            results.extend(page);
            if !full {
                return Ok(results);
            }
        }
    }

    /// [`Self::results_page`] undecoded: each result as a document of its own fields, for a reader
    /// that skips what it cannot decode (the dashboard, over any domain's batch).
    pub async fn result_documents_page(
        &self,
        batch_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(String, Document)>, StoreError> {
        let parent = self.batch_path(batch_id)?;
        let markers = self.page_in(&parent, ITEMS, after, limit).await?;
        let own_documents = self.page_in(&parent, RESULTS, after, limit).await?;
        let in_markers = markers.into_iter().filter_map(result_in_marker).collect();
        let in_own = own_documents.into_iter().map(|document| (document_id(&document).to_string(), document)).collect();
        Ok(merge_pages(in_markers, in_own, limit as usize))
    }

    /// Up to `limit` documents of `collection` after `after`, in id order: done markers' results
    /// (projected) in `items`, every document in `results`.
    async fn page_in(
        &self,
        parent: &str,
        collection: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Document>, StoreError> {
        let markers = collection == ITEMS;
        let select = self.db.fluent().select();
        let select = if markers { select.fields([RESULT]) } else { select };
        let mut query = select
            .from(collection)
            .parent(parent)
            .filter(|q| markers.then(|| q.field("status").eq("done")).flatten())
            .order(|o| o.fields([o.field("__name__").ascending()]))
            .limit(limit);
        if let Some(after) = after {
            let reference = ValueType::ReferenceValue(format!("{parent}/{collection}/{after}"));
            let value = firestore::gcloud_sdk::google::firestore::v1::Value { value_type: Some(reference) };
            query = query.start_at(FirestoreQueryCursor::AfterValue(vec![FirestoreValue::from(value)]));
        }
        query.query().await.map_err(firestore_error("reading a page of results"))
    }

    /// Writes a result for one item in `batches/{batch_id}/results/{item}`, a document of its own
    /// (overwrite), as workers of the older completion shape did; tests and tools use it. A worker
    /// records its result in the item's marker instead ([`Self::record_item_result`]).
    pub async fn stage_result<T>(&self, batch_id: &str, item: &str, result: &T) -> Result<(), StoreError>
    where
        T: serde::Serialize + for<'de> serde::Deserialize<'de> + Sync + Send,
    {
        let parent = self.batch_path(batch_id)?;
        self.db
            .fluent()
            .update()
            .in_col(RESULTS)
            .document_id(item)
            .parent(parent)
            .object(result)
            .execute::<T>()
            .await
            .map(|_| ())
            .map_err(firestore_error("staging a result"))
    }
}

/// A done marker's result as a document of the result's own fields; `None` for a marker without one
/// (recorded when results had documents of their own). Takes the marker, so the result's fields move
/// rather than being copied (a page holds hundreds of them).
fn result_in_marker(mut marker: Document) -> Option<(String, Document)> {
    let id = document_id(&marker).to_string();
    let ValueType::MapValue(map) = marker.fields.remove(RESULT)?.value_type? else {
        return None;
    };
    Some((id, Document { fields: map.fields, ..marker }))
}

/// The first `limit` of the union of two pages, each in id order, in id order; an id in both is
/// taken from `first`. Both pages hold the first `limit` of their collection after the same cursor,
/// so the union's first `limit` are among them, and a full page stays full. That holds for the
/// markers' page, whose done markers without a result are dropped before the merge, because every
/// version of the engine gives a done item a result (`ItemOutcome::Done` carries one): in its marker,
/// or in `results/` for markers recorded without one, which the other page holds.
fn merge_pages<T>(first: Vec<(String, T)>, second: Vec<(String, T)>, limit: usize) -> Vec<(String, T)> {
    let mut merged = Vec::with_capacity(limit.min(first.len() + second.len()));
    let (mut first, mut second) = (first.into_iter().peekable(), second.into_iter().peekable());
    while merged.len() < limit {
        let order = match (first.peek(), second.peek()) {
            (Some((a, _)), Some((b, _))) => a.cmp(b),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => break,
        };
        if order == Ordering::Equal {
            second.next();
        }
        merged.extend(if order == Ordering::Greater { second.next() } else { first.next() });
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(ids: &[&str], tag: &'static str) -> Vec<(String, &'static str)> {
        ids.iter().map(|id| (id.to_string(), tag)).collect()
    }

    #[test]
    fn pages_merge_in_id_order_up_to_the_limit_preferring_the_marker() {
        let markers = page(&["a", "c", "d"], "marker");
        let own = page(&["b", "c", "e"], "own");
        let merged = merge_pages(markers.clone(), own.clone(), 10);
        assert_eq!(
            merged,
            vec![
                ("a".into(), "marker"),
                ("b".into(), "own"),
                ("c".into(), "marker"),
                ("d".into(), "marker"),
                ("e".into(), "own")
            ]
        );
        let first_three: Vec<String> = merge_pages(markers, own, 3).into_iter().map(|(id, _)| id).collect();
        assert_eq!(first_three, ["a", "b", "c"]);
        assert!(merge_pages::<()>(Vec::new(), Vec::new(), 5).is_empty());
    }

    #[test]
    fn a_marker_holds_its_result_as_a_map_and_an_older_one_none() {
        let marker = ItemMarker::pending();
        let with = FirestoreDb::serialize_to_doc(
            "projects/p/databases/(default)/documents/batches/b/items/x",
            &MarkerWithResult { marker: &marker, result: &serde_json::json!({"value": 7}) },
        )
        .expect("serialize");
        let (id, result) = result_in_marker(with.clone()).expect("a result");
        assert_eq!(id, "x");
        let decoded: serde_json::Value = FirestoreDb::deserialize_doc_to(&result).expect("decode");
        assert_eq!(decoded["value"], 7, "{decoded}");
        let without =
            FirestoreDb::serialize_to_doc("projects/p/databases/(default)/documents/batches/b/items/y", &marker)
                .expect("serialize");
        assert!(result_in_marker(without).is_none());
        // The marker's own fields are still there, beside the result.
        let read: ItemMarker = FirestoreDb::deserialize_doc_to(&with).expect("a marker");
        assert_eq!(read, marker);
    }
}
