//! The operator dashboard: a read-only web UI over Firestore, server-rendered (axum + maud), working
//! without JavaScript except for the live progress of a running batch (a one-second poll of its JSON).
//! Every page's reads are bounded (see [`queries`]) and counted in the `x-firestore-reads` header and
//! the page footer. Operator actions stay in the CLI; each page names the commands.
//!
//! - [`filters`]: query parameters, validated (bad input is a 400 with a reason).
//! - [`queries`]: the bounded, counted Firestore reads.
//! - [`views`]: what a page shows, shared by the HTML pages and the JSON API.
//! - [`explain`]: timeline and "what is it waiting for", pure.
//! - [`pages`]: the HTML; [`api`]: the JSON under `/api/`.

pub mod api;
pub mod explain;
pub mod filters;
pub mod pages;
pub mod queries;
pub mod views;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::Markup;

use crate::batch::store::{BatchStore, StoreError};
use crate::batch::sweep_policy::SweepSettings;
use filters::{AuditFilter, BatchFilter, DateView, DeadLetterFilter, FilterError, ItemFilter};
use queries::Reads;

/// The response header carrying the Firestore reads a request cost.
pub const READS_HEADER: &str = "x-firestore-reads";

/// What the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct Dashboard {
    store: BatchStore,
    /// The sweeper's settings, so "what happens next" matches the deployed sweeper.
    sweep: Arc<SweepSettings>,
}

impl Dashboard {
    pub fn new(store: BatchStore, sweep: SweepSettings) -> Self {
        Self { store, sweep: Arc::new(sweep) }
    }

    /// Every page and API route, ready to be merged into a server.
    pub fn router(self) -> Router {
        Router::new()
            .route("/", get(batches_page))
            .route("/batches", get(batches_page))
            .route("/batches/{id}", get(batch_page))
            .route("/dates/{date}", get(date_page))
            .route("/dead-letters", get(dead_letters_page))
            .route("/audit", get(audit_page))
            .merge(api::routes())
            .fallback(not_found_page)
            .with_state(self)
    }
}

/// Why a request got no page.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    #[error(transparent)]
    BadRequest(#[from] FilterError),
    #[error("{0}")]
    NotFound(String),
    #[error("reading Firestore failed: {0}")]
    Store(#[from] StoreError),
}

impl DashboardError {
    fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            // Firestore unavailable or slow: worth a retry, and not the request's fault.
            Self::Store(e) if e.is_transient() => StatusCode::SERVICE_UNAVAILABLE,
            Self::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// A response with the reads header and no caching (pages are live).
fn respond(status: StatusCode, reads: u64, content_type: &'static str, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(READS_HEADER, HeaderValue::from(reads));
    response
}

const HTML: &str = "text/html; charset=utf-8";

fn html(reads: &Reads, markup: Markup) -> Response {
    respond(StatusCode::OK, reads.get(), HTML, markup.into_string())
}

/// An HTML error page for `error`.
fn html_error(error: &DashboardError, reads: &Reads) -> Response {
    if let DashboardError::Store(e) = error {
        tracing::warn!(error = %e, "dashboard read failed");
    }
    let title = match error {
        DashboardError::BadRequest(_) => "Bad request",
        DashboardError::NotFound(_) => "Not found",
        DashboardError::Store(_) => "Firestore unavailable",
    };
    let page = pages::layout::frame(title, reads.get(), &[], pages::layout::error_body(&error.to_string()));
    respond(error.status(), reads.get(), HTML, page.into_string())
}

/// Runs `load` and renders its page, or the error page.
async fn page(load: impl AsyncFnOnce(&Reads) -> Result<Markup, DashboardError>) -> Response {
    let reads = Reads::default();
    match load(&reads).await {
        Ok(markup) => html(&reads, markup),
        Err(error) => html_error(&error, &reads),
    }
}

/// Ids the pipeline makes; anything else cannot name a document and is answered 404 without a read.
fn checked_id(kind: &str, id: &str) -> Result<(), DashboardError> {
    let valid =
        !id.is_empty() && id.len() <= 300 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if valid { Ok(()) } else { Err(DashboardError::NotFound(format!("no {kind} {id:?}"))) }
}

async fn batches_page(State(app): State<Dashboard>, RawQuery(query): RawQuery) -> Response {
    page(async |reads: &Reads| {
        let filter = BatchFilter::parse(query.as_deref())?;
        let batches = queries::batch_page(&app.store, &filter, reads).await?;
        Ok(pages::batches::render(&filter, &batches, reads.get()))
    })
    .await
}

async fn batch_page(State(app): State<Dashboard>, Path(id): Path<String>, RawQuery(query): RawQuery) -> Response {
    page(async |reads: &Reads| {
        checked_id("batch", &id)?;
        let filter = ItemFilter::parse(query.as_deref())?;
        let view = views::batch(&app.store, &app.sweep, &id, &filter, reads)
            .await?
            .ok_or_else(|| DashboardError::NotFound(format!("no batch {id}")))?;
        Ok(pages::batch::render(&view, &filter, reads.get()))
    })
    .await
}

async fn date_page(State(app): State<Dashboard>, Path(date): Path<String>, RawQuery(query): RawQuery) -> Response {
    page(async |reads: &Reads| {
        let view = DateView::parse(query.as_deref())?;
        let game_date =
            date.parse().map_err(|_| DashboardError::NotFound(format!("{date:?} is not a YYYY-MM-DD date")))?;
        let data = views::date(&app.store, game_date, &view, reads)
            .await?
            .ok_or_else(|| DashboardError::NotFound(format!("no batch was ever run for {date}")))?;
        Ok(pages::date::render(&data, &view, reads.get()))
    })
    .await
}

async fn dead_letters_page(State(app): State<Dashboard>, RawQuery(query): RawQuery) -> Response {
    page(async |reads: &Reads| {
        let filter = DeadLetterFilter::parse(query.as_deref())?;
        let records = queries::dead_letter_page(&app.store, &filter, reads).await?;
        Ok(pages::records::dead_letters(&filter, &records, reads.get()))
    })
    .await
}

async fn audit_page(State(app): State<Dashboard>, RawQuery(query): RawQuery) -> Response {
    page(async |reads: &Reads| {
        let filter = AuditFilter::parse(query.as_deref())?;
        let records = queries::audit_page(&app.store, &filter, reads).await?;
        Ok(pages::records::audit(&filter, &records, reads.get()))
    })
    .await
}

async fn not_found_page() -> Response {
    html_error(&DashboardError::NotFound("no such page".into()), &Reads::default())
}
