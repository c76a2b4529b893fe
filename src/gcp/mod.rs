//! Thin adapters over Google's client crates: connection set-up (emulator or Application Default
//! Credentials), error classification, and the few operations the pipeline needs.

pub mod errors;
pub mod firestore;
pub mod pubsub;

pub use errors::GcpError;
