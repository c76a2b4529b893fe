//! The generic fan-out/fan-in batch engine. It knows nothing about basketball: a domain plugs in by
//! listing the items of a key, handling one item and consolidating a finished batch.
//!
//! So far: the pure state machine ([`state`]). The Firestore store, trigger, completion and finalize
//! handlers follow (issue "The batch engine").

pub mod state;
