//! props-pipeline: a stateless Pub/Sub + Firestore pipeline producing NBA player-prop predictions.
//!
//! See docs/ARCHITECTURE.md for the map of the code.

pub mod batch;
pub mod config;
pub mod consumer;
pub mod dashboard;
pub mod gcp;
pub mod messages;
pub mod nba;
pub mod ops;
pub mod runner;
pub mod setup;
pub mod topology;
