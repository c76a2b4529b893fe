//! The engine's Firestore documents (the design's layout) and where they live.
//!
//! ```text
//! game_dates/{date}                        GameDatePointer   fencing pointer and published generation per key
//! batches/{batch_id}                       BatchHeader       O(1) writes per batch
//! batches/{batch_id}/items/{item}          ItemMarker        pending -> done | failed | skipped, once
//! batches/{batch_id}/counters/{shard}      CounterShard      done/failed/skipped totals, over shards
//! batches/{batch_id}/results/{item}        (domain's)        an item's result, written with its done marker
//! dead_letters/{id}                        DeadLetterRecord  what reached a dead-letter topic, for operators
//! ```

use firestore::FirestoreInstant;
use serde::{Deserialize, Serialize};

use super::state::{BatchState, FinalizeClaim};

pub const GAME_DATES: &str = "game_dates";
pub const BATCHES: &str = "batches";
pub const ITEMS: &str = "items";
pub const COUNTERS: &str = "counters";
pub const RESULTS: &str = "results";
pub const DEAD_LETTERS: &str = "dead_letters";

/// `game_dates/{date}`: which batch is the date's newest generation (the fence: only it may finish
/// COMPLETE), and which one is published (its results are the date's current ones).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GameDatePointer {
    pub current_generation: u64,
    pub current_batch_id: String,
    /// The published generation: the last batch that finished COMPLETE while it was current. Written
    /// in the same commit that makes it COMPLETE, so it only ever names a COMPLETE batch; a newer
    /// generation that fails or is superseded leaves it where it was. Readers follow it to the batch's
    /// results (`batches/{id}/results`), which are never copied or changed after the batch finishes.
    #[serde(default)]
    pub published_batch_id: Option<String>,
    #[serde(default)]
    pub published_generation: Option<u64>,
}

/// `batches/{batch_id}`: written when the batch is created, sealed, claimed, finalized and announced,
/// and never by a completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchHeader {
    pub batch_id: String,
    pub game_date: String,
    pub generation: u64,
    pub mode: String,
    pub reason: String,
    /// The trigger's metadata object, as JSON text (Firestore maps cannot hold every JSON value).
    pub metadata_json: String,
    pub correlation_id: String,
    pub trigger_message_id: String,
    pub state: BatchState,
    pub expected_count: u64,
    pub counter_shards: u64,
    /// Failure policy: the batch ends FAILED when more than this fraction of its items failed.
    pub tolerated_failed_fraction: f64,
    /// The domain's version of what handles the items (see `BatchDomain::model_version`), as it was
    /// when the batch was created; absent in headers written before it existed.
    #[serde(default)]
    pub model_version: Option<String>,
    #[serde(with = "firestore::serialize_as_timestamp")]
    pub created_at: FirestoreInstant,
    #[serde(default, with = "firestore::serialize_as_optional_timestamp")]
    pub sealed_at: Option<FirestoreInstant>,
    #[serde(default)]
    pub finalize_claim: Option<FinalizeClaim>,
    #[serde(default, with = "firestore::serialize_as_optional_timestamp")]
    pub finalized_at: Option<FirestoreInstant>,
    /// Outcome counts, copied from the counter shards when the batch is finalized.
    #[serde(default)]
    pub done_count: Option<u64>,
    #[serde(default)]
    pub failed_count: Option<u64>,
    /// Items the domain declined (terminal, not failures), copied from the shards when finalized.
    #[serde(default)]
    pub skipped_count: Option<u64>,
    #[serde(default)]
    pub predictions_count: Option<u64>,
    /// Done items / expected items when finalized (see [`super::state::coverage`]).
    #[serde(default)]
    pub coverage: Option<f64>,
    /// Why the batch ended FAILED (failure policy or a permanent consolidation error).
    #[serde(default)]
    pub failure_reason: Option<String>,
    /// The batch that superseded this one.
    #[serde(default)]
    pub superseded_by: Option<String>,
    /// Outbox: set once the ready event of a COMPLETE batch was published. Stored as an explicit null
    /// until then, so the sweeper can query for COMPLETE batches never announced.
    #[serde(default, with = "firestore::serialize_as_null")]
    pub ready_message_id: Option<String>,
    /// Times the sweeper (or an operator) re-published the pending requests; capped by the sweeper.
    #[serde(default)]
    pub redrive_count: u64,
    #[serde(default, with = "firestore::serialize_as_optional_timestamp")]
    pub last_redrive_at: Option<FirestoreInstant>,
    /// How many times this document was written: the engine promises O(1) per batch.
    pub header_writes: u64,
    /// Whether the counter shards count down their `remaining` items, so that a completion leaving its
    /// shard non-empty needs no wholeness check. False for batches created before shards did, and for
    /// batches begun without their items' shard sizes: every completion then checks.
    #[serde(default)]
    pub shards_count_down: bool,
    /// Firestore TTL field: a TTL policy on `batches.expire_at` deletes the header after retention.
    #[serde(with = "firestore::serialize_as_timestamp")]
    pub expire_at: FirestoreInstant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    Pending,
    Done,
    Failed,
    /// The domain declined the item with a reason (e.g. too little data to price it): terminal like
    /// done and failed, outside the failure policy, and it lowers coverage.
    Skipped,
}

/// `batches/{batch_id}/items/{item}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemMarker {
    pub status: ItemStatus,
    /// Completions recorded for this item (1 once terminal; duplicates do not count).
    pub attempts: u64,
    pub predictions_count: u64,
    /// Why the item failed, or why it was skipped.
    #[serde(default)]
    pub error: Option<String>,
    /// Times the dead-letter role put this item's request back to work after it ran out of delivery
    /// attempts without a verdict; capped by `PROPS_MAX_ITEM_REDRIVES`.
    #[serde(default)]
    pub redrives: u64,
    /// The dead letter that caused the last redrive: the same dead letter handled again (its ack was
    /// lost, or re-publishing failed) re-publishes without counting a second redrive.
    #[serde(default)]
    pub redriven_by: Option<String>,
    /// The counter shard this item is counted in ([`counter_shard_of`] with the batch's shard count),
    /// written with the pending marker so that the worker recording the item needs no header read.
    /// Absent in markers written before it existed: the recorder then reads the header's shard count.
    #[serde(default)]
    pub shard: Option<u64>,
}

impl ItemMarker {
    pub fn pending() -> Self {
        Self {
            status: ItemStatus::Pending,
            attempts: 0,
            predictions_count: 0,
            error: None,
            redrives: 0,
            redriven_by: None,
            shard: None,
        }
    }

    /// A pending marker that names its counter shard.
    pub fn pending_in(shard: u64) -> Self {
        Self { shard: Some(shard), ..Self::pending() }
    }
}

/// `batches/{batch_id}/counters/{shard}`: only ever changed by increments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterShard {
    pub done: u64,
    pub failed: u64,
    /// Absent in shards written before the skipped outcome existed.
    #[serde(default)]
    pub skipped: u64,
    pub predictions: u64,
    /// Items of this shard not yet terminal: set to the shard's size at begin and counted down by each
    /// recorded completion, whose commit returns the value after its decrement. Only the completion
    /// that brings its shard to zero checks whether the whole batch is done (see
    /// [`BatchHeader::shards_count_down`]). Absent (0) in shards written before it existed.
    #[serde(default)]
    pub remaining: i64,
}

/// The shard an item's completion is counted in: a stable FNV-1a hash, so a redelivered completion
/// lands on the same shard on any replica.
pub fn counter_shard_of(item: &str, shards: u64) -> u64 {
    fnv1a64(item.as_bytes()) % shards.max(1)
}

/// Items per counter shard when a batch's shard count is sized from its item count: a shard then
/// takes about this many increments over the batch's whole life, so no shard can take more than about
/// ten writes in any 10 s window, however fast the batch runs (Google's guidance for real Firestore is
/// about one sustained write per second per document).
pub const ITEMS_PER_SHARD: u64 = 10;

/// The most counter shards a batch gets. Begin creates every shard in its transaction (with the
/// header, the pointer and the audit record, under Firestore's long-standing 500 writes per commit),
/// and the sweeper reads them all to find an idle batch's last activity.
pub const MAX_COUNTER_SHARDS: u64 = 400;

/// Counter shards for a batch of `items` items: `ceil(items / ITEMS_PER_SHARD)`, at least 1 and at
/// most [`MAX_COUNTER_SHARDS`] (from 4,000 items on a shard takes more than `ITEMS_PER_SHARD`).
pub fn counter_shards_for(items: u64) -> u64 {
    items.div_ceil(ITEMS_PER_SHARD).clamp(1, MAX_COUNTER_SHARDS)
}

/// How many of `items` each of `shards` counter shards counts (see [`counter_shard_of`]).
pub fn shard_sizes(items: &[String], shards: u64) -> Vec<u64> {
    let mut sizes = vec![0; shards.max(1) as usize];
    for item in items {
        sizes[counter_shard_of(item, shards) as usize] += 1;
    }
    sizes
}

/// FNV-1a 64: stable across processes and releases (unlike `std`'s hasher), cheap, not cryptographic.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// The id of the batch a trigger creates: its date and message id, so a redelivered trigger finds
/// the batch it already created.
pub fn batch_id_for(game_date: &str, trigger_message_id: &str) -> String {
    let safe: String =
        trigger_message_id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    format!("{game_date}-m{safe}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_stable_and_spread() {
        assert_eq!(counter_shard_of("lebronjames", 8), counter_shard_of("lebronjames", 8));
        let mut used = std::collections::HashSet::new();
        for i in 0..200 {
            used.insert(counter_shard_of(&format!("player{i}"), 8));
        }
        assert_eq!(used.len(), 8, "200 items use every one of 8 shards");
        assert_eq!(counter_shard_of("x", 0), 0, "zero shards is treated as one");
    }

    #[test]
    fn shard_sizes_add_up_to_the_items_each_counted_where_its_completion_lands() {
        let items: Vec<String> = (0..100).map(|i| format!("player{i}")).collect();
        let sizes = shard_sizes(&items, 8);
        assert_eq!(sizes.len(), 8);
        assert_eq!(sizes.iter().sum::<u64>(), 100);
        let first_shard = items.iter().filter(|i| counter_shard_of(i, 8) == 0).count() as u64;
        assert_eq!(sizes[0], first_shard);
        assert_eq!(shard_sizes(&[], 0), vec![0], "zero shards is treated as one");
    }

    #[test]
    fn shard_count_grows_with_the_batch_within_bounds() {
        assert_eq!(counter_shards_for(0), 1, "an empty batch still has a shard to count on");
        assert_eq!(counter_shards_for(1), 1);
        assert_eq!(counter_shards_for(ITEMS_PER_SHARD), 1);
        assert_eq!(counter_shards_for(ITEMS_PER_SHARD + 1), 2);
        assert_eq!(counter_shards_for(100), 100u64.div_ceil(ITEMS_PER_SHARD));
        assert_eq!(counter_shards_for(1_000), 1_000u64.div_ceil(ITEMS_PER_SHARD));
        assert_eq!(counter_shards_for(MAX_COUNTER_SHARDS * ITEMS_PER_SHARD), MAX_COUNTER_SHARDS);
        assert_eq!(counter_shards_for(u64::MAX), MAX_COUNTER_SHARDS);
        for items in [1u64, 9, 10, 11, 99, 100, 999, 3_999, 4_000] {
            let shards = counter_shards_for(items);
            assert!(items.div_ceil(shards) <= ITEMS_PER_SHARD, "{items} items: at most {ITEMS_PER_SHARD} a shard");
        }
    }

    #[test]
    fn sized_shards_each_take_few_items() {
        let items: Vec<String> = (0..1_000).map(|i| format!("player{i}")).collect();
        let sizes = shard_sizes(&items, counter_shards_for(items.len() as u64));
        assert_eq!(sizes.len() as u64, counter_shards_for(1_000));
        // A hash spreads unevenly; the busiest shard still takes a small multiple of the mean.
        assert!(sizes.iter().max().copied().unwrap_or(0) <= 3 * ITEMS_PER_SHARD, "{sizes:?}");
    }

    #[test]
    fn batch_ids_are_valid_document_ids() {
        assert_eq!(batch_id_for("2024-04-22", "1234567"), "2024-04-22-m1234567");
        assert_eq!(batch_id_for("2024-04-22", "a/b"), "2024-04-22-ma_b");
    }
}
