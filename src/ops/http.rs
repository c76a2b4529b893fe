//! The per-process HTTP server: `/healthz` (alive), `/readyz` (subscribed and Firestore reachable) and
//! `/metrics` (Prometheus text). It runs until the process's shutdown token is cancelled.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::readiness::ReadyCheck;

/// How often histogram samples are folded into their buckets when nobody scrapes: rendering does it
/// too, so this only bounds memory between scrapes (the exporter asks its users to run upkeep).
const UPKEEP_PERIOD: Duration = Duration::from_secs(5);

/// The exposition format `/metrics` answers in.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Error)]
pub enum HttpError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("the http server failed: {0}")]
    Serve(#[source] std::io::Error),
}

#[derive(Clone)]
struct AppState {
    ready: ReadyCheck,
    metrics: &'static PrometheusHandle,
}

/// A bound, running server.
pub struct HttpServer {
    /// The address actually bound (port 0 resolved).
    pub addr: SocketAddr,
    /// Ends after `shutdown` is cancelled and open requests are answered.
    pub task: JoinHandle<Result<(), HttpError>>,
}

/// Binds `addr` (port 0 picks a free port), logs the bound address as `http listening` with field
/// `http_addr` (tests and benchmarks parse it), and serves until `shutdown` is cancelled.
pub async fn serve(
    addr: SocketAddr,
    ready: ReadyCheck,
    metrics: &'static PrometheusHandle,
    shutdown: CancellationToken,
) -> Result<HttpServer, HttpError> {
    serve_with(addr, ready, metrics, shutdown, Router::new()).await
}

/// [`serve`] with more routes beside the ops ones (the dashboard's pages), on the same listener.
pub async fn serve_with(
    addr: SocketAddr,
    ready: ReadyCheck,
    metrics: &'static PrometheusHandle,
    shutdown: CancellationToken,
    extra: Router,
) -> Result<HttpServer, HttpError> {
    let listener = TcpListener::bind(addr).await.map_err(|source| HttpError::Bind { addr, source })?;
    let addr = listener.local_addr().map_err(|source| HttpError::Bind { addr, source })?;
    tracing::info!(http_addr = %addr, "http listening");
    let app = router(AppState { ready, metrics }).merge(extra);
    let task = tokio::spawn(async move {
        let upkeep = tokio::spawn(upkeep(metrics, shutdown.clone()));
        let served = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await;
        upkeep.abort();
        served.map_err(HttpError::Serve)
    });
    Ok(HttpServer { addr, task })
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Alive: the runtime answers. Nothing else is checked, so a slow dependency never gets the pod killed.
async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.ready.verdict().await {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {reason}\n")),
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], state.metrics.render())
}

async fn upkeep(metrics: &'static PrometheusHandle, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(UPKEEP_PERIOD);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => metrics.run_upkeep(),
        }
    }
}
