//! The NBA player-prop domain: data, model, and how it plugs into the batch engine.
//!
//! - [`types`]: the vocabulary (game logs, slates, lines, predictions).
//! - [`data`]: reading the game-log files, synthetic lines, slates (pure).
//! - [`model`]: the baseline prop model (pure).
//! - [`backtest`]: walk-forward backtest of the model on the game logs (pure).
//! - [`store`]: the domain's Firestore documents; [`load`] writes logs and slates.
//! - [`domain`]: `BatchDomain` (slate items) and `ItemHandler` (the worker).
//! - [`export`]: the exporter role and the front-end file; `export_file` writes that file as a stream.

pub mod backtest;
pub mod data;
pub mod domain;
pub mod export;
mod export_file;
pub mod inputs;
pub mod load;
pub mod model;
mod staged_file;
pub mod store;
pub mod types;
