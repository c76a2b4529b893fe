//! The JSON API under `/api/`: the same views as the pages, for scripts. Errors are
//! `{"error": "..."}` with the page's status code. `/api/batches/{id}` is the document
//! `props-pipeline status --json` prints for that batch (the same `status_of`).

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde::Serialize;

use super::filters::{AuditFilter, BatchFilter, DateView, DeadLetterFilter, ItemFilter};
use super::queries::{self, Reads};
use super::{Dashboard, DashboardError, checked_id, respond, views};

const JSON: &str = "application/json";

pub(super) fn routes() -> Router<Dashboard> {
    Router::new()
        .route("/api/batches", get(batches))
        .route("/api/batches/{id}", get(batch))
        .route("/api/batches/{id}/items", get(items))
        .route("/api/batches/{id}/view", get(batch_view))
        .route("/api/dates/{date}", get(date))
        .route("/api/dead-letters", get(dead_letters))
        .route("/api/audit", get(audit))
}

/// Runs `load` and answers its value as JSON, or the error as `{"error": ...}`.
async fn json<T: Serialize>(load: impl AsyncFnOnce(&Reads) -> Result<T, DashboardError>) -> Response {
    let reads = Reads::default();
    match load(&reads).await {
        Ok(value) => match serde_json::to_string(&value) {
            Ok(body) => respond(StatusCode::OK, reads.get(), JSON, body),
            Err(error) => respond(StatusCode::INTERNAL_SERVER_ERROR, reads.get(), JSON, error_body(&error.to_string())),
        },
        Err(error) => {
            if let DashboardError::Store(e) = &error {
                tracing::warn!(error = %e, "dashboard read failed");
            }
            respond(error.status(), reads.get(), JSON, error_body(&error.to_string()))
        }
    }
}

fn error_body(message: &str) -> String {
    serde_json::json!({ "error": message }).to_string()
}

fn no_batch(id: &str) -> DashboardError {
    DashboardError::NotFound(format!("no batch {id}"))
}

async fn batches(State(app): State<Dashboard>, RawQuery(query): RawQuery) -> Response {
    json(async |reads: &Reads| {
        let filter = BatchFilter::parse(query.as_deref())?;
        Ok(queries::batch_page(&app.store, &filter, reads).await?)
    })
    .await
}

async fn batch(State(app): State<Dashboard>, Path(id): Path<String>, RawQuery(query): RawQuery) -> Response {
    json(async |reads: &Reads| {
        checked_id("batch", &id)?;
        // No parameters here; refuse any so a typo is not silently ignored.
        if query.as_deref().is_some_and(|q| !q.is_empty()) {
            return Err(filters_unknown(query.as_deref().unwrap_or_default()));
        }
        let header = queries::header(&app.store, &id, reads).await?.ok_or_else(|| no_batch(&id))?;
        Ok(queries::status(&app.store, header, reads).await?)
    })
    .await
}

fn filters_unknown(query: &str) -> DashboardError {
    let name = query.split(['=', '&']).next().unwrap_or_default();
    DashboardError::BadRequest(super::filters::FilterError::Unknown(name.chars().take(40).collect()))
}

async fn items(State(app): State<Dashboard>, Path(id): Path<String>, RawQuery(query): RawQuery) -> Response {
    json(async |reads: &Reads| {
        checked_id("batch", &id)?;
        let filter = ItemFilter::parse(query.as_deref())?;
        queries::header(&app.store, &id, reads).await?.ok_or_else(|| no_batch(&id))?;
        Ok(queries::item_page(&app.store, &id, &filter, reads).await?)
    })
    .await
}

async fn batch_view(State(app): State<Dashboard>, Path(id): Path<String>, RawQuery(query): RawQuery) -> Response {
    json(async |reads: &Reads| {
        checked_id("batch", &id)?;
        let filter = ItemFilter::parse(query.as_deref())?;
        views::batch(&app.store, &app.sweep, &id, &filter, reads).await?.ok_or_else(|| no_batch(&id))
    })
    .await
}

async fn date(State(app): State<Dashboard>, Path(date): Path<String>, RawQuery(query): RawQuery) -> Response {
    json(async |reads: &Reads| {
        let view = DateView::parse(query.as_deref())?;
        let game_date =
            date.parse().map_err(|_| DashboardError::NotFound(format!("{date:?} is not a YYYY-MM-DD date")))?;
        views::date(&app.store, game_date, &view, reads)
            .await?
            .ok_or_else(|| DashboardError::NotFound(format!("no batch was ever run for {date}")))
    })
    .await
}

async fn dead_letters(State(app): State<Dashboard>, RawQuery(query): RawQuery) -> Response {
    json(async |reads: &Reads| {
        let filter = DeadLetterFilter::parse(query.as_deref())?;
        Ok(queries::dead_letter_page(&app.store, &filter, reads).await?)
    })
    .await
}

async fn audit(State(app): State<Dashboard>, RawQuery(query): RawQuery) -> Response {
    json(async |reads: &Reads| {
        let filter = AuditFilter::parse(query.as_deref())?;
        Ok(queries::audit_page(&app.store, &filter, reads).await?)
    })
    .await
}
