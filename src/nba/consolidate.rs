//! Consolidation: the staged results of a finished batch become the date's current predictions.
//!
//! A swap, never a delete-first: an older generation's prediction is copied to
//! `predictions/{date}/history/{player}-g{generation}` (marked superseded by the new generation) before
//! the current document is replaced, and a newer generation is never overwritten by an older one. Every
//! write carries a precondition (the update time that was read, or "must not exist"), so a concurrent
//! consolidation makes this one fail transiently and re-run, which is safe: a re-run skips what it
//! already wrote.

use std::collections::HashMap;

use firestore::{FirestoreDb, FirestoreInstant, FirestoreWritePrecondition};

use super::store::{
    MAX_WRITES_PER_BATCH, PREDICTION_HISTORY, PREDICTION_PLAYERS, PREDICTIONS, StoredPrediction, firestore_error,
    precondition,
};
use super::types::PlayerPrediction;
use crate::batch::documents::BatchHeader;
use crate::batch::domain::{ConsolidationReport, DomainError};
use crate::batch::store::{BatchStore, StoreError};
use crate::gcp::firestore::document_id;

/// One planned write of a consolidation.
enum Write {
    Put { collection: &'static str, id: String, doc: Box<StoredPrediction>, precondition: FirestoreWritePrecondition },
    Delete { id: String, precondition: FirestoreWritePrecondition },
}

/// What a consolidation changed: this run's writes, and the date's state after it for the audit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConsolidationSummary {
    pub written: usize,
    pub superseded: usize,
    pub skipped_newer: usize,
    /// Predictions of this generation already current (an earlier run wrote them).
    pub already_current: usize,
    pub report: ConsolidationReport,
}

pub async fn consolidate(store: &BatchStore, batch: &BatchHeader) -> Result<ConsolidationSummary, DomainError> {
    let db = store.db();
    let staged: Vec<(String, PlayerPrediction)> = store.staged_results(&batch.batch_id).await.map_err(transient)?;
    let current = read_current(db, &batch.game_date).await.map_err(transient)?;
    let (history, replacements, summary) = plan(batch, staged, current);
    let parent = db.parent_path(PREDICTIONS, &batch.game_date).map_err(|e| transient(e.to_string()))?.to_string();
    // History copies first: if this run dies half way, the next run still finds the old current
    // documents and copies them again before replacing them.
    apply(db, &parent, history, AlreadyExists::Fine).await?;
    apply(db, &parent, replacements, AlreadyExists::Race).await?;
    let mut summary = summary;
    // Counted from what is stored, not from this run's writes: a re-run after a crash half way wrote
    // only the rest, and the audit wants the whole swap.
    summary.report = ConsolidationReport {
        superseded: count_superseded_by(db, &parent, batch.generation).await.map_err(transient)?,
        replacements: (summary.written + summary.already_current) as u64,
    };
    Ok(summary)
}

/// History copies marked superseded by `generation` (one aggregation query, billed as one read).
async fn count_superseded_by(db: &FirestoreDb, parent: &str, generation: u64) -> Result<u64, StoreError> {
    #[derive(Debug, Default, serde::Deserialize)]
    struct Count {
        #[serde(default)]
        count: u64,
    }
    let counts: Vec<Count> = db
        .fluent()
        .select()
        .from(PREDICTION_HISTORY)
        .parent(parent)
        .filter(|q| q.for_all([q.field("superseded_by_generation").eq(generation)]))
        .aggregate(|a| a.fields([a.field("count").count()]))
        .obj()
        .query()
        .await
        .map_err(firestore_error("counting superseded predictions"))?;
    Ok(counts.into_iter().next().unwrap_or_default().count)
}

/// Current predictions of a date with the update time each was read at.
async fn read_current(
    db: &FirestoreDb,
    game_date: &str,
) -> Result<HashMap<String, (StoredPrediction, Option<FirestoreInstant>)>, StoreError> {
    let parent = db.parent_path(PREDICTIONS, game_date).map_err(firestore_error("building a path"))?;
    let documents = db
        .fluent()
        .select()
        .from(PREDICTION_PLAYERS)
        .parent(&parent)
        .query()
        .await
        .map_err(firestore_error("reading current predictions"))?;
    let mut current = HashMap::new();
    for doc in documents {
        let id = document_id(&doc).to_string();
        let stored: StoredPrediction =
            FirestoreDb::deserialize_doc_to(&doc).map_err(firestore_error("decoding a prediction"))?;
        let update_time = doc.update_time.and_then(|t| firestore::timestamp_utils::from_timestamp(t).ok());
        current.insert(id, (stored, update_time));
    }
    Ok(current)
}

fn plan(
    batch: &BatchHeader,
    staged: Vec<(String, PlayerPrediction)>,
    mut current: HashMap<String, (StoredPrediction, Option<FirestoreInstant>)>,
) -> (Vec<Write>, Vec<Write>, ConsolidationSummary) {
    let (mut history, mut replacements, mut summary) = (Vec::new(), Vec::new(), ConsolidationSummary::default());
    let supersede = |old: &StoredPrediction, player: &str, history: &mut Vec<Write>| {
        let mut copy = old.clone();
        copy.superseded_by_generation = Some(batch.generation);
        history.push(Write::Put {
            collection: PREDICTION_HISTORY,
            id: format!("{player}-g{}", old.generation),
            doc: Box::new(copy),
            // A re-run rewrites the same copy: no precondition needed.
            precondition: FirestoreWritePrecondition::Exists(false),
        });
    };
    for (player, prediction) in staged {
        let existing = current.remove(&player);
        match &existing {
            Some((old, _)) if old.generation > batch.generation => {
                summary.skipped_newer += 1;
                continue;
            }
            Some((old, _)) if old.generation == batch.generation => {
                summary.already_current += 1; // written by an earlier run
                continue;
            }
            Some((old, _)) => {
                supersede(old, &player, &mut history);
                summary.superseded += 1;
            }
            None => {}
        }
        let doc = StoredPrediction {
            batch_id: batch.batch_id.clone(),
            generation: batch.generation,
            prediction,
            superseded_by_generation: None,
        };
        let precondition = precondition(existing.and_then(|(_, time)| time));
        replacements.push(Write::Put { collection: PREDICTION_PLAYERS, id: player, doc: Box::new(doc), precondition });
        summary.written += 1;
    }
    // Players the new generation did not predict: their older predictions are superseded as well,
    // since the newer generation is the date's answer.
    for (player, (old, update_time)) in current {
        if old.generation < batch.generation {
            supersede(&old, &player, &mut history);
            replacements.push(Write::Delete { id: player, precondition: precondition(update_time) });
            summary.superseded += 1;
        }
    }
    (history, replacements, summary)
}

/// What a create that finds its document already there means.
#[derive(Clone, Copy, PartialEq, Eq)]
enum AlreadyExists {
    /// An earlier run wrote the same history copy.
    Fine,
    /// Another consolidation got there first: re-run and decide again.
    Race,
}

async fn apply(
    db: &FirestoreDb,
    parent: &str,
    writes: Vec<Write>,
    already_exists: AlreadyExists,
) -> Result<(), DomainError> {
    let writer = db.create_simple_batch_writer().await.map_err(transient)?;
    let mut writes = writes.into_iter().peekable();
    while writes.peek().is_some() {
        let mut batch = writer.new_batch();
        for write in writes.by_ref().take(MAX_WRITES_PER_BATCH) {
            let queued = match &write {
                Write::Put { collection, id, doc, precondition } => db
                    .fluent()
                    .update()
                    .in_col(collection)
                    .precondition(precondition.clone())
                    .document_id(id)
                    .parent(parent)
                    .object(doc.as_ref())
                    .add_to_batch(&mut batch)
                    .map(|_| ()),
                Write::Delete { id, precondition } => db
                    .fluent()
                    .delete()
                    .from(PREDICTION_PLAYERS)
                    .parent(parent)
                    .document_id(id)
                    .precondition(precondition.clone())
                    .add_to_batch(&mut batch)
                    .map(|_| ()),
            };
            queued.map_err(transient)?;
        }
        let response = batch.write().await.map_err(transient)?;
        // Anything but success is a race or a server error, and the whole (idempotent) consolidation
        // is retried.
        const ALREADY_EXISTS: i32 = 6;
        let fine = |code: i32| code == 0 || (code == ALREADY_EXISTS && already_exists == AlreadyExists::Fine);
        if let Some(status) = response.statuses.iter().find(|s| !fine(s.code)) {
            return Err(DomainError::Transient(format!(
                "a prediction write failed (code {}): {}; another consolidation may have raced",
                status.code, status.message
            )));
        }
    }
    Ok(())
}

fn transient(error: impl std::fmt::Display) -> DomainError {
    DomainError::Transient(error.to_string())
}
