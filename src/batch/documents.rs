//! The engine's Firestore documents (the design's layout) and where they live.
//!
//! ```text
//! game_dates/{date}                        GameDatePointer   fencing pointer and published generation per key
//! batches/{batch_id}                       BatchHeader       O(1) writes per batch
//! batches/{batch_id}/items/{item}          ItemMarker        pending -> done | failed | skipped, once; a
//!                                                            done marker holds its result (`result`)
//! batches/{batch_id}/counters/{shard}      CounterShard      done/failed/skipped totals, over shards
//! batches/{batch_id}/results/{item}        (domain's)        a result in a document of its own (older)
//! dead_letters/{id}                        DeadLetterRecord  what reached a dead-letter topic, for operators
//! ```

use firestore::FirestoreInstant;
use serde::{Deserialize, Serialize};

use super::state::{BatchState, FinalizeClaim};

pub const GAME_DATES: &str = "game_dates";
pub const BATCHES: &str = "batches";
pub const ITEMS: &str = "items";
pub const COUNTERS: &str = "counters";
/// Results in documents of their own, as batches recorded them before results moved into markers.
pub const RESULTS: &str = "results";
/// The done marker's field holding its item's result.
pub const RESULT: &str = "result";
/// The counter-shard field of the last recording commit's time ([`CounterShard::touched_at`]).
pub const TOUCHED_AT: &str = "touched_at";
/// The counter-shard field of the results its done items produced ([`CounterShard::results`]). The
/// wire name predates the generic engine and stays, so that shards already written keep adding up.
pub const RESULTS_COUNT: &str = "predictions";
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
    /// Results of the done items, copied from the shards when finalized (`results_count` stored).
    #[serde(default, rename = "results_count")]
    pub results_count: Option<u64>,
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
    /// Whether the counter shards count their items down (markers carry their shard's size, see
    /// `state::ShardCountdown`), so that a completion leaving its shard non-empty needs no wholeness
    /// check. False for batches created before shards did, and for batches begun without their item
    /// list (tests): every completion then checks.
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
    /// Results the item produced (`results_count` stored).
    #[serde(rename = "results_count")]
    pub results_count: u64,
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
    /// How many items its shard counts ([`shard_size`]), written with the pending marker in batches
    /// that count their shards down: the recording commit increments the shard's `recorded` and
    /// returns its new value, so `shard_size - recorded` is what the shard has to go, with no shard
    /// document created beforehand. Absent in markers written before it existed: the commit then
    /// counts the shard's `remaining` down from the size begin wrote.
    #[serde(default)]
    pub shard_size: Option<u64>,
}

impl ItemMarker {
    pub fn pending() -> Self {
        Self {
            status: ItemStatus::Pending,
            attempts: 0,
            results_count: 0,
            error: None,
            redrives: 0,
            redriven_by: None,
            shard: None,
            shard_size: None,
        }
    }

    /// A pending marker that names its counter shard and, when the batch counts its shards down, the
    /// shard's size.
    pub fn pending_in(shard: u64, shard_size: Option<u64>) -> Self {
        Self { shard: Some(shard), shard_size, ..Self::pending() }
    }
}

/// `batches/{batch_id}/counters/{shard}`: only ever changed by increments, and created by the first
/// (begin writes no shard).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterShard {
    // Every field defaults: the first increment creates the document with only the fields it touches.
    #[serde(default)]
    pub done: u64,
    #[serde(default)]
    pub failed: u64,
    #[serde(default)]
    pub skipped: u64,
    /// Results of the shard's done items (stored as [`RESULTS_COUNT`]).
    #[serde(default, rename = "predictions")]
    pub results: u64,
    /// Items of this shard recorded terminal: each recording commit increments it and returns the value
    /// after, and its marker's `shard_size` minus that is what the shard has to go. Only the completion
    /// that brings its shard to zero checks whether the whole batch is done (see
    /// [`BatchHeader::shards_count_down`] and `state::ShardCountdown`).
    #[serde(default)]
    pub recorded: u64,
    /// When a recording commit last counted on this shard (the server's time): the sweeper and the
    /// dashboard find a batch's last activity from the newest shard alone. Absent in older shards.
    #[serde(default, with = "firestore::serialize_as_optional_timestamp")]
    pub touched_at: Option<FirestoreInstant>,
    /// The older countdown, for markers without `shard_size`: begin set it to the shard's size and
    /// each recorded completion decremented it. Absent (0) in shards written since.
    #[serde(default)]
    pub remaining: i64,
}

/// The shard of an item whose marker does not name one (written before markers did): a stable
/// FNV-1a hash of its id, as fan-outs then assigned it.
pub fn counter_shard_of(item: &str, shards: u64) -> u64 {
    fnv1a64(item.as_bytes()) % shards.max(1)
}

/// The counter shard of the item at `position` in a batch's list of `items` (sorted, see
/// `BatchEngine::listed_items`): consecutive blocks of `ceil(items / shards)` items share a shard.
/// Blocks, not a hash or a round-robin: every shard counts exactly its block (at most
/// [`ITEMS_PER_SHARD`] when sized by [`counter_shards_for`]), and requests are published in list order,
/// so shards empty one after another through the batch. A completion that empties its shard checks
/// whether the batch is whole; spread like this, about one check per block runs while the batch
/// runs, instead of one per shard piling up on its last items (a hash or round-robin empties
/// nearly every shard in the batch's last seconds, and those checks then delay its finalize).
pub fn shard_of_position(position: u64, items: u64, shards: u64) -> u64 {
    (position / block_size(items, shards)).min(shards.max(1) - 1)
}

/// How many items of a batch of `items` the counter shard `shard` counts (see [`shard_of_position`]):
/// its block, cut at the end of the list (`shards` blocks always cover it).
pub fn shard_size(shard: u64, items: u64, shards: u64) -> u64 {
    let block = block_size(items, shards);
    let start = shard.saturating_mul(block).min(items);
    let end = shard.saturating_add(1).saturating_mul(block).min(items);
    end - start
}

/// Items per block: `ceil(items / shards)`, at least 1 (zero shards is treated as one).
fn block_size(items: u64, shards: u64) -> u64 {
    items.div_ceil(shards.max(1)).max(1)
}

/// Items per counter shard when a batch's shard count is sized from its item count: a shard then
/// takes at most this many increments over the batch's whole life (its document is created by the
/// first of them), so no shard takes more than ten writes in any 10 s window, however fast the batch
/// runs (Google's guidance for real Firestore is about one sustained write per second per document).
pub const ITEMS_PER_SHARD: u64 = 10;

/// The most counter shards a batch gets (a batch of more than 10,000 items puts more than
/// [`ITEMS_PER_SHARD`] on a shard): the sweeper reads an idle batch's shards to find its last
/// activity, and the wholeness check sums them (one aggregation, billed a read per 1,000 entries).
pub const MAX_COUNTER_SHARDS: u64 = 1_000;

/// Counter shards for a batch of `items` items: `ceil(items / ITEMS_PER_SHARD)`, at least 1 and at
/// most [`MAX_COUNTER_SHARDS`].
pub fn counter_shards_for(items: u64) -> u64 {
    items.div_ceil(ITEMS_PER_SHARD).clamp(1, MAX_COUNTER_SHARDS)
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

    /// The sizes [`shard_size`] gives, checked against counting [`shard_of_position`] item by item.
    fn counted_sizes(items: u64, shards: u64) -> Vec<u64> {
        let mut sizes = vec![0; shards.max(1) as usize];
        for position in 0..items {
            sizes[shard_of_position(position, items, shards) as usize] += 1;
        }
        sizes
    }

    #[test]
    fn every_shard_counts_exactly_its_block_of_positions() {
        for (items, shards) in [(100, 8), (100, 10), (95, 10), (11, 2), (1_000, 100), (5_000, 500), (7, 8), (0, 1)] {
            let sizes: Vec<u64> = (0..shards).map(|shard| shard_size(shard, items, shards)).collect();
            assert_eq!(sizes, counted_sizes(items, shards), "{items} items over {shards} shards");
            assert_eq!(sizes.iter().sum::<u64>(), items);
        }
        assert_eq!((0..10).map(|p| shard_of_position(p, 10, 4)).collect::<Vec<_>>(), [0, 0, 0, 1, 1, 1, 2, 2, 2, 3]);
        assert_eq!(shard_of_position(3, 5, 0), 0, "zero shards is treated as one");
        assert_eq!(shard_size(0, 5, 0), 5);
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
    fn sized_shards_never_take_more_than_items_per_shard() {
        for items in [1u64, 9, 10, 11, 99, 1_000, 4_001, 5_000, 9_999, 10_000] {
            let shards = counter_shards_for(items);
            let largest = (0..shards).map(|shard| shard_size(shard, items, shards)).max().unwrap_or(0);
            assert!(largest <= ITEMS_PER_SHARD, "{items} items: largest shard {largest}");
        }
    }

    #[test]
    fn batch_ids_are_valid_document_ids() {
        assert_eq!(batch_id_for("2024-04-22", "1234567"), "2024-04-22-m1234567");
        assert_eq!(batch_id_for("2024-04-22", "a/b"), "2024-04-22-ma_b");
    }
}
