//! The generic fan-out/fan-in batch engine. It knows nothing about basketball: a domain plugs in by
//! listing the items of a key, handling one item and consolidating a finished batch.
//!
//! - [`claims`]: the finalize claims this process holds, released at shutdown.
//! - [`coalesce`]: concurrent wholeness checks of one batch in this process, coalesced (trailing edge).
//! - [`state`]: the state machine and its decisions, pure.
//! - [`documents`]: the Firestore layout.
//! - [`store`]: Firestore transactions (compare-and-set) for every decision.
//! - [`engine`]: trigger -> fan-out -> completions; [`finalize`]: claim -> consolidate -> finish -> ready.
//! - [`roles`]: the engine's message handlers for the consumer runtime.
//! - [`domain`]: the traits a domain implements.
//! - [`settings`]: the engine's knobs.
//! - [`status`]: what `props-pipeline status` reports.
//! - [`audit`]: one record per trigger the coordinator saw.
//! - [`backfill`]: one trigger per key over a range, resumable, a bounded number in flight.
//! - [`dead_letters`]: the dead-letter role and the `dead_letters` record.
//! - [`sweep_policy`], [`sweeper`], [`redrive`]: the sweeper role (stalled, stuck, unannounced and
//!   expired batches) and redrives, also used by the `missing` and `redrive` commands.

pub mod audit;
pub mod backfill;
pub mod begin;
pub mod claims;
pub mod coalesce;
pub mod dead_letters;
pub mod documents;
pub mod domain;
pub mod engine;
pub mod finalize;
pub mod finish;
pub mod redrive;
pub mod roles;
pub mod settings;
pub mod state;
pub mod status;
pub mod store;
pub mod sweep_policy;
pub mod sweeper;
