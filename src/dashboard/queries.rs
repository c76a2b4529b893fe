//! Every Firestore read the dashboard makes, each bounded by a page size or a fixed cap, and each
//! counted in [`Reads`] as Firestore bills it: one read per document returned (at least one per
//! query), one per 1,000 index entries an aggregation (count, sum) covers. docs/OPERATIONS.md lists the
//! reads per page.

use std::sync::atomic::{AtomicU64, Ordering};

use firestore::gcloud_sdk::google::firestore::v1::{Document, Value, value::ValueType};
use firestore::{
    FirestoreDb, FirestoreInstant, FirestoreQueryCursor, FirestoreQueryDirection, FirestoreQueryOrder, FirestoreValue,
};
use serde::{Deserialize, Serialize};

use super::filters::{AuditFilter, BatchFilter, Cursor, DeadLetterFilter, ItemFilter};
use crate::batch::audit::{AUDIT, AuditRecord};
use crate::batch::dead_letters::DeadLetterRecord;
use crate::batch::documents::{BATCHES, BatchHeader, DEAD_LETTERS, GAME_DATES, GameDatePointer, ITEMS, ItemMarker};
use crate::batch::status::{BatchStatus, recorded_counts, status_of};
use crate::batch::store::{BatchStore, StoreError};
use crate::gcp::firestore::document_id;

/// Headers a text search examines per page at most: text is matched here (Firestore has no substring
/// filter), so the scan is capped and the page says how far it looked.
pub const MAX_TEXT_SCAN: u32 = 1000;
/// Headers fetched per step of a text search.
const TEXT_SCAN_STEP: u32 = 100;
/// Batches of one date a lineage lists (a date is regenerated a handful of times).
pub const MAX_LINEAGE: u32 = 50;

/// Firestore reads of one request, as billed.
#[derive(Debug, Default)]
pub struct Reads(AtomicU64);

impl Reads {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn documents(&self, returned: usize) {
        // An empty answer is still billed as one read.
        self.0.fetch_add((returned as u64).max(1), Ordering::Relaxed);
    }

    fn aggregation(&self, entries: u64) {
        self.0.fetch_add(entries.div_ceil(1000).max(1), Ordering::Relaxed);
    }
}

fn error(operation: &'static str) -> impl Fn(firestore::errors::FirestoreError) -> StoreError {
    move |source| StoreError::Firestore { operation, source: Box::new(source) }
}

/// A batch as a list shows it.
#[derive(Debug, Clone, Serialize)]
pub struct BatchRow {
    #[serde(flatten)]
    pub status: BatchStatus,
    /// Seconds since the batch was created.
    pub age_secs: u64,
    /// Created to finalized; created to now while not final.
    pub duration_secs: u64,
}

/// One page of batches.
#[derive(Debug, Clone, Serialize)]
pub struct BatchPage {
    pub batches: Vec<BatchRow>,
    /// Pass as `cursor` for the next page; `None` on the last one.
    pub next_cursor: Option<String>,
    /// Batches matching the date and state filters (a count aggregation); `None` with a text filter.
    pub matching: Option<u64>,
    /// With a text filter: headers examined for this page (at most [`MAX_TEXT_SCAN`]).
    pub scanned: Option<u64>,
}

fn seconds_between(from: FirestoreInstant, to: FirestoreInstant) -> u64 {
    u64::try_from(to.as_second() - from.as_second()).unwrap_or(0)
}

/// The status of `header`, summing its counter shards only when the header does not carry final counts.
pub async fn status(store: &BatchStore, header: BatchHeader, reads: &Reads) -> Result<BatchStatus, StoreError> {
    let totals = match recorded_counts(&header) {
        Some(totals) => totals,
        None => {
            let totals = store.totals(&header.batch_id).await?;
            reads.aggregation(1);
            totals
        }
    };
    Ok(status_of(header, totals))
}

pub async fn row(store: &BatchStore, header: BatchHeader, reads: &Reads) -> Result<BatchRow, StoreError> {
    let now = FirestoreInstant::now();
    let (created, finalized) = (header.created_at, header.finalized_at);
    let age_secs = seconds_between(created, now);
    let duration_secs = seconds_between(created, finalized.unwrap_or(now));
    Ok(BatchRow { status: status(store, header, reads).await?, age_secs, duration_secs })
}

pub async fn header(store: &BatchStore, batch_id: &str, reads: &Reads) -> Result<Option<BatchHeader>, StoreError> {
    let header = store.header(batch_id).await?;
    reads.documents(1);
    Ok(header)
}

fn timestamp(at: FirestoreInstant) -> FirestoreValue {
    FirestoreValue::from(Value {
        value_type: Some(ValueType::TimestampValue(firestore::timestamp_utils::to_timestamp(at))),
    })
}

fn reference(path: String) -> FirestoreValue {
    FirestoreValue::from(Value { value_type: Some(ValueType::ReferenceValue(path)) })
}

fn document_path(db: &FirestoreDb, collection: &str, id: &str) -> Result<String, StoreError> {
    db.parent_path(collection, id).map(|p| p.to_string()).map_err(error("building a path"))
}

fn decode<T: for<'de> Deserialize<'de>>(documents: &[Document]) -> Result<Vec<(String, T)>, StoreError> {
    documents
        .iter()
        .map(|doc| {
            FirestoreDb::deserialize_doc_to::<T>(doc)
                .map(|value| (document_id(doc).to_string(), value))
                .map_err(error("decoding a document"))
        })
        .collect()
}

/// Headers in the order of `filter` (newest first), `limit` of them from `cursor`.
async fn batch_headers(
    store: &BatchStore,
    filter: &BatchFilter,
    cursor: Option<&Cursor>,
    limit: u32,
    reads: &Reads,
) -> Result<Vec<BatchHeader>, StoreError> {
    use FirestoreQueryDirection::Descending;
    let db = store.db();
    let mut orders: Vec<FirestoreQueryOrder> = Vec::new();
    if filter.by_date() {
        orders.push(("game_date", Descending).into());
    }
    orders.push(("created_at", Descending).into());
    orders.push(("__name__", Descending).into());
    let mut query = db
        .fluent()
        .select()
        .from(BATCHES)
        .filter(|q| batch_conditions(&q, filter))
        .order(|_| orders.clone())
        .limit(limit);
    if let Some(cursor) = cursor {
        let mut values = Vec::new();
        if let Some(key) = &cursor.key {
            values.push(Into::<FirestoreValue>::into(key.clone()));
        }
        values.push(timestamp(cursor.at));
        values.push(reference(document_path(db, BATCHES, &cursor.id)?));
        query = query.start_at(FirestoreQueryCursor::AfterValue(values));
    }
    let documents = query.query().await.map_err(error("listing batches"))?;
    reads.documents(documents.len());
    Ok(decode::<BatchHeader>(&documents)?.into_iter().map(|(_, h)| h).collect())
}

fn batch_conditions(
    q: &firestore::select_filter_builder::FirestoreQueryFilterBuilder,
    filter: &BatchFilter,
) -> Option<firestore::FirestoreQueryFilter> {
    q.for_all([
        filter.state.and_then(|s| q.field("state").eq(s.as_str())),
        filter.from.and_then(|d| q.field("game_date").greater_than_or_equal(d.to_string())),
        filter.to.and_then(|d| q.field("game_date").less_than_or_equal(d.to_string())),
    ])
}

fn cursor_of(header: &BatchHeader, by_date: bool) -> Cursor {
    Cursor { key: by_date.then(|| header.game_date.clone()), at: header.created_at, id: header.batch_id.clone() }
}

fn text_matches(header: &BatchHeader, text: &str) -> bool {
    let text = text.to_lowercase();
    [&header.batch_id, &header.reason, &header.correlation_id].iter().any(|field| field.to_lowercase().contains(&text))
}

/// One page of batches for `filter`: at most `limit + 1` headers (the extra one tells whether a next
/// page exists), one sum aggregation per non-final batch and one count aggregation; with a text
/// filter, up to [`MAX_TEXT_SCAN`] headers instead of `limit + 1` and no count.
pub async fn batch_page(store: &BatchStore, filter: &BatchFilter, reads: &Reads) -> Result<BatchPage, StoreError> {
    let by_date = filter.by_date();
    let (headers, next_cursor, scanned) = match &filter.text {
        None => {
            let mut headers = batch_headers(store, filter, filter.cursor.as_ref(), filter.limit + 1, reads).await?;
            let more = headers.len() > filter.limit as usize;
            headers.truncate(filter.limit as usize);
            let next = more.then(|| headers.last().map(|h| cursor_of(h, by_date).encode())).flatten();
            (headers, next, None)
        }
        Some(text) => {
            let mut found = Vec::new();
            let mut scanned = 0u32;
            let mut cursor = filter.cursor.clone();
            let mut next = None;
            while scanned < MAX_TEXT_SCAN {
                let step = TEXT_SCAN_STEP.min(MAX_TEXT_SCAN - scanned);
                let chunk = batch_headers(store, filter, cursor.as_ref(), step, reads).await?;
                let exhausted = chunk.len() < step as usize;
                for header in chunk {
                    scanned += 1;
                    cursor = Some(cursor_of(&header, by_date));
                    if text_matches(&header, text) {
                        if found.len() == filter.limit as usize {
                            // One more match exists: the next page starts after the last one shown.
                            next = found.last().map(|h: &BatchHeader| cursor_of(h, by_date).encode());
                            break;
                        }
                        found.push(header);
                    }
                }
                if next.is_some() || exhausted {
                    break;
                }
            }
            if next.is_none() && scanned >= MAX_TEXT_SCAN {
                // The scan stopped before the end: carry on from the last header examined.
                next = cursor.map(|c| c.encode());
            }
            (found, next, Some(u64::from(scanned)))
        }
    };
    let matching = match filter.text {
        Some(_) => None,
        None => Some(count_batches(store, filter, reads).await?),
    };
    let mut batches = Vec::with_capacity(headers.len());
    for header in headers {
        batches.push(row(store, header, reads).await?);
    }
    Ok(BatchPage { batches, next_cursor, matching, scanned })
}

#[derive(Debug, Default, Deserialize)]
struct Count {
    #[serde(default)]
    count: u64,
}

async fn count_batches(store: &BatchStore, filter: &BatchFilter, reads: &Reads) -> Result<u64, StoreError> {
    let counts: Vec<Count> = store
        .db()
        .fluent()
        .select()
        .from(BATCHES)
        .filter(|q| batch_conditions(&q, filter))
        .aggregate(|a| a.fields([a.field("count").count()]))
        .obj()
        .query()
        .await
        .map_err(error("counting batches"))?;
    let count = counts.first().map_or(0, |c| c.count);
    reads.aggregation(count);
    Ok(count)
}

/// An unfinished item of a batch.
#[derive(Debug, Clone, Serialize)]
pub struct ItemRow {
    pub item: String,
    #[serde(flatten)]
    pub marker: ItemMarker,
}

#[derive(Debug, Clone, Serialize)]
pub struct ItemPage {
    pub items: Vec<ItemRow>,
    pub next_cursor: Option<String>,
}

/// Pending, failed and skipped items (or the filter's) of a batch in id order: at most `limit + 1` markers.
pub async fn item_page(
    store: &BatchStore,
    batch_id: &str,
    filter: &ItemFilter,
    reads: &Reads,
) -> Result<ItemPage, StoreError> {
    let db = store.db();
    let parent = db.parent_path(BATCHES, batch_id).map_err(error("building a path"))?;
    let statuses = filter.statuses();
    let mut query = db
        .fluent()
        .select()
        .from(ITEMS)
        .parent(&parent)
        .filter(|q| q.for_all([q.field("status").is_in(statuses.clone())]))
        .order(|o| o.fields([o.field("__name__").ascending()]))
        .limit(filter.limit + 1);
    if let Some(after) = &filter.after {
        let path = parent.clone().at(ITEMS, after.as_str()).map_err(error("building a path"))?.to_string();
        query = query.start_at(FirestoreQueryCursor::AfterValue(vec![reference(path)]));
    }
    let documents = query.query().await.map_err(error("listing items"))?;
    reads.documents(documents.len());
    let mut items: Vec<ItemRow> =
        decode::<ItemMarker>(&documents)?.into_iter().map(|(item, marker)| ItemRow { item, marker }).collect();
    let more = items.len() > filter.limit as usize;
    items.truncate(filter.limit as usize);
    let next_cursor = more.then(|| items.last().map(|i| i.item.clone())).flatten();
    Ok(ItemPage { items, next_cursor })
}

/// Every batch of a date (at most [`MAX_LINEAGE`]), oldest generation first.
pub async fn batches_of_date(store: &BatchStore, date: &str, reads: &Reads) -> Result<Vec<BatchHeader>, StoreError> {
    let documents = store
        .db()
        .fluent()
        .select()
        .from(BATCHES)
        .filter(|q| q.for_all([q.field("game_date").eq(date)]))
        .order(|o| o.fields([o.field("generation").descending()]))
        .limit(MAX_LINEAGE)
        .query()
        .await
        .map_err(error("listing the batches of a date"))?;
    reads.documents(documents.len());
    let mut headers: Vec<BatchHeader> = decode(&documents)?.into_iter().map(|(_, h)| h).collect();
    headers.sort_by_key(|h| (h.generation, h.created_at));
    Ok(headers)
}

/// The trigger's audit record of a batch.
pub async fn audit_record(
    store: &BatchStore,
    message_id: &str,
    reads: &Reads,
) -> Result<Option<AuditRecord>, StoreError> {
    let record = store.audit_record(message_id).await?;
    reads.documents(1);
    Ok(record)
}

/// `game_dates/{date}`: the date's current generation and batch.
pub async fn pointer(store: &BatchStore, date: &str, reads: &Reads) -> Result<Option<GameDatePointer>, StoreError> {
    let pointer =
        store.db().fluent().select().by_id_in(GAME_DATES).obj().one(date).await.map_err(error("reading a date"))?;
    reads.documents(1);
    Ok(pointer)
}

/// The last activity of a batch (reads the shard counted on last: one document; every shard of a
/// batch whose shards predate `touched_at`, not counted here).
pub async fn last_activity(
    store: &BatchStore,
    header: &BatchHeader,
    reads: &Reads,
) -> Result<FirestoreInstant, StoreError> {
    let at = store.last_activity(header).await?;
    reads.documents(1);
    Ok(at)
}

/// A page of a list of records ordered by `recorded_at`, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct RecordPage<T> {
    pub records: Vec<T>,
    pub next_cursor: Option<String>,
}

async fn records_page<T: for<'de> Deserialize<'de>>(
    store: &BatchStore,
    collection: &'static str,
    conditions: &[(&'static str, String)],
    cursor: Option<&Cursor>,
    limit: u32,
    reads: &Reads,
    recorded_at: impl Fn(&T) -> FirestoreInstant,
) -> Result<RecordPage<T>, StoreError> {
    let db = store.db();
    let mut query = db
        .fluent()
        .select()
        .from(collection)
        .filter(|q| q.for_all(conditions.iter().map(|(field, value)| q.field(*field).eq(value.as_str()))))
        .order(|o| o.fields([o.field("recorded_at").descending(), o.field("__name__").descending()]))
        .limit(limit + 1);
    if let Some(cursor) = cursor {
        let values = vec![timestamp(cursor.at), reference(document_path(db, collection, &cursor.id)?)];
        query = query.start_at(FirestoreQueryCursor::AfterValue(values));
    }
    let documents = query.query().await.map_err(error("listing records"))?;
    reads.documents(documents.len());
    let mut records = decode::<T>(&documents)?;
    let more = records.len() > limit as usize;
    records.truncate(limit as usize);
    let next_cursor = more
        .then(|| records.last().map(|(id, r)| Cursor { key: None, at: recorded_at(r), id: id.clone() }.encode()))
        .flatten();
    Ok(RecordPage { records: records.into_iter().map(|(_, r)| r).collect(), next_cursor })
}

pub async fn audit_page(
    store: &BatchStore,
    filter: &AuditFilter,
    reads: &Reads,
) -> Result<RecordPage<AuditRecord>, StoreError> {
    let mut conditions = Vec::new();
    if let Some(date) = filter.game_date {
        conditions.push(("game_date", date.to_string()));
    }
    if let Some(outcome) = filter.outcome {
        conditions.push(("outcome", outcome.as_str().to_string()));
    }
    records_page(store, AUDIT, &conditions, filter.cursor.as_ref(), filter.limit, reads, |r: &AuditRecord| {
        r.recorded_at
    })
    .await
}

pub async fn dead_letter_page(
    store: &BatchStore,
    filter: &DeadLetterFilter,
    reads: &Reads,
) -> Result<RecordPage<DeadLetterRecord>, StoreError> {
    let conditions: Vec<_> = filter.channel.map(|c| ("channel", c.to_string())).into_iter().collect();
    records_page(
        store,
        DEAD_LETTERS,
        &conditions,
        filter.cursor.as_ref(),
        filter.limit,
        reads,
        |r: &DeadLetterRecord| r.recorded_at,
    )
    .await
}

/// The NBA predictions and export record of a date (a slate is a few hundred players; capped anyway).
pub mod nba {
    use super::*;
    use crate::nba::store::{EXPORTS, ExportRecord, StoredPrediction};
    use crate::nba::types::PlayerPrediction;

    /// Most predictions a date page reads.
    pub const MAX_PREDICTIONS: u32 = 1000;

    /// The predictions of the date's published batch (`(batch id, generation)`, from its pointer).
    pub async fn predictions(
        store: &BatchStore,
        published: Option<(String, u64)>,
        reads: &Reads,
    ) -> Result<Vec<StoredPrediction>, StoreError> {
        let Some((batch_id, generation)) = published else {
            return Ok(Vec::new());
        };
        let documents = store.result_documents_page(&batch_id, None, MAX_PREDICTIONS).await?;
        reads.documents(documents.len());
        // Results of another domain's batch on the same date (the engine is generic) are not
        // predictions: the page lists none rather than failing.
        Ok(documents
            .iter()
            .filter_map(|(_, doc)| FirestoreDb::deserialize_doc_to::<PlayerPrediction>(doc).ok())
            .map(|prediction| StoredPrediction { batch_id: batch_id.clone(), generation, prediction })
            .collect())
    }

    pub async fn export_record(
        store: &BatchStore,
        date: &str,
        reads: &Reads,
    ) -> Result<Option<ExportRecord>, StoreError> {
        let record = store
            .db()
            .fluent()
            .select()
            .by_id_in(EXPORTS)
            .obj()
            .one(date)
            .await
            .map_err(error("reading an export record"))?;
        reads.documents(1);
        Ok(record)
    }
}
