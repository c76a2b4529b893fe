//! Operations: the per-process HTTP server (`/healthz`, `/readyz`, `/metrics`), the metric names and
//! recorder, readiness, and the Cloud Logging JSON log format.

pub mod http;
pub mod log_format;
pub mod metrics;
pub mod readiness;
