//! Query-string parameters of the dashboard's pages and API, parsed and validated before any Firestore
//! read: an unknown parameter, a malformed value or a page size past [`MAX_PAGE_SIZE`] is a 400 with a
//! sentence saying which, never a 500 or an unbounded read.

use std::fmt::Write as _;

use firestore::FirestoreInstant;
use thiserror::Error;

use crate::batch::audit::AuditOutcome;
use crate::batch::state::BatchState;
use crate::messages::GameDate;

/// Rows per page when the request does not say.
pub const DEFAULT_PAGE_SIZE: u32 = 25;
/// The largest page a request may ask for: bounds the documents one page reads.
pub const MAX_PAGE_SIZE: u32 = 200;
/// Longest text filter accepted.
const MAX_TEXT_CHARS: usize = 200;
/// Dead-letter channels, as recorded in `dead_letters`.
pub const CHANNELS: [&str; 4] = ["trigger", "request", "completion", "ready"];

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FilterError {
    #[error("unknown parameter `{0}`")]
    Unknown(String),
    #[error("parameter `{0}` is given twice")]
    Repeated(String),
    #[error("invalid `{name}`: {reason}")]
    Invalid { name: &'static str, reason: String },
}

fn invalid(name: &'static str, reason: impl Into<String>) -> FilterError {
    FilterError::Invalid { name, reason: reason.into() }
}

/// The parameters of one request, checked against the names a page accepts.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(query: Option<&str>, allowed: &[&str]) -> Result<Self, FilterError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            if !allowed.contains(&name.as_ref()) {
                return Err(FilterError::Unknown(name.chars().take(40).collect()));
            }
            if pairs.iter().any(|(seen, _)| *seen == name) {
                return Err(FilterError::Repeated(name.into_owned()));
            }
            pairs.push((name.into_owned(), value.trim().to_string()));
        }
        Ok(Self(pairs))
    }

    /// The value of `name`; an empty value (a blank form field) counts as absent.
    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, v)| n == name && !v.is_empty()).map(|(_, v)| v.as_str())
    }

    fn date(&self, name: &'static str) -> Result<Option<GameDate>, FilterError> {
        self.get(name)
            .map(|v| v.parse().map_err(|_| invalid(name, format!("{v:?} is not a YYYY-MM-DD date"))))
            .transpose()
    }

    fn limit(&self) -> Result<u32, FilterError> {
        let Some(text) = self.get("limit") else { return Ok(DEFAULT_PAGE_SIZE) };
        match text.parse::<u32>() {
            Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => Ok(n),
            _ => Err(invalid("limit", format!("{text:?} is not a page size from 1 to {MAX_PAGE_SIZE}"))),
        }
    }

    fn flag(&self, name: &'static str) -> Result<bool, FilterError> {
        match self.get(name) {
            None | Some("0" | "false" | "off") => Ok(false),
            Some("1" | "true" | "on") => Ok(true),
            Some(other) => Err(invalid(name, format!("{other:?} is not 1/0, true/false or on/off"))),
        }
    }

    fn cursor<T>(&self, parse: impl Fn(&str) -> Option<T>) -> Result<Option<T>, FilterError> {
        self.get("cursor")
            .map(|text| parse(text).ok_or_else(|| invalid("cursor", "not a cursor this page made")))
            .transpose()
    }
}

/// Characters of the ids the pipeline makes (batch ids, item ids, message ids, record ids).
fn is_id(text: &str) -> bool {
    !text.is_empty() && text.len() <= 300 && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Where the next page of a list ordered by a time (newest first) starts: after the row with this time
/// and document id (the id breaks ties between equal times). Written `{seconds}.{nanos}~{id}`, with
/// the row's key (game date) between them when the list is ordered by it first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub key: Option<String>,
    pub at: FirestoreInstant,
    pub id: String,
}

impl Cursor {
    pub fn encode(&self) -> String {
        let mut text = format!("{}.{:09}", self.at.as_second(), self.at.subsec_nanosecond());
        if let Some(key) = &self.key {
            let _ = write!(text, "~{key}");
        }
        let _ = write!(text, "~{}", self.id);
        text
    }

    fn decode(text: &str, keyed: bool) -> Option<Self> {
        let parts: Vec<&str> = text.split('~').collect();
        let (at, key, id) = match (keyed, parts.as_slice()) {
            (false, [at, id]) => (*at, None, *id),
            (true, [at, key, id]) => (*at, Some(key.parse::<GameDate>().ok()?.to_string()), *id),
            _ => return None,
        };
        let (secs, nanos) = at.split_once('.')?;
        let at = FirestoreInstant::new(secs.parse().ok()?, nanos.parse().ok()?).ok()?;
        is_id(id).then(|| Self { key, at, id: id.to_string() })
    }
}

/// `/` and `/api/batches`: which batches, newest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchFilter {
    pub from: Option<GameDate>,
    pub to: Option<GameDate>,
    pub state: Option<BatchState>,
    /// Case-insensitive substring of the batch id, reason or correlation id.
    pub text: Option<String>,
    pub cursor: Option<Cursor>,
    pub limit: u32,
}

impl BatchFilter {
    pub fn parse(query: Option<&str>) -> Result<Self, FilterError> {
        let params = Params::parse(query, &["from", "to", "state", "text", "cursor", "limit"])?;
        let (from, to) = (params.date("from")?, params.date("to")?);
        if let (Some(from), Some(to)) = (from, to)
            && from > to
        {
            return Err(invalid("to", format!("{to} is before `from` {from}")));
        }
        let state = params
            .get("state")
            .map(|v| {
                BatchState::ALL
                    .into_iter()
                    .find(|s| s.as_str().eq_ignore_ascii_case(v))
                    .ok_or_else(|| invalid("state", format!("{v:?} is not one of {}", state_names())))
            })
            .transpose()?;
        let text = params.get("text").map(str::to_string);
        if text.as_ref().is_some_and(|t| t.chars().count() > MAX_TEXT_CHARS) {
            return Err(invalid("text", format!("longer than {MAX_TEXT_CHARS} characters")));
        }
        let keyed = from.is_some() || to.is_some();
        let cursor = params.cursor(|text| Cursor::decode(text, keyed))?;
        Ok(Self { from, to, state, text, cursor, limit: params.limit()? })
    }

    /// Whether the list is ordered by game date first (a date range needs it: Firestore orders a range
    /// filter's field first).
    pub fn by_date(&self) -> bool {
        self.from.is_some() || self.to.is_some()
    }

    /// The query string of this filter starting at `cursor` (for the next page's link).
    pub fn query_string(&self, cursor: Option<&str>) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        let mut put = |name: &str, value: Option<String>| {
            if let Some(value) = value {
                query.append_pair(name, &value);
            }
        };
        put("from", self.from.map(|d| d.to_string()));
        put("to", self.to.map(|d| d.to_string()));
        put("state", self.state.map(|s| s.as_str().to_string()));
        put("text", self.text.clone());
        put("limit", (self.limit != DEFAULT_PAGE_SIZE).then(|| self.limit.to_string()));
        put("cursor", cursor.map(str::to_string));
        query.finish()
    }
}

fn state_names() -> String {
    BatchState::ALL.map(|s| s.as_str()).join(", ")
}

/// `/batches/{id}`: which of its unfinished items to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemFilter {
    /// Only failed items (with `skipped_only`: failed and skipped).
    pub failed_only: bool,
    /// Only skipped items (with `failed_only`: failed and skipped). Neither: every unfinished or
    /// declined item (pending, failed, skipped).
    pub skipped_only: bool,
    /// List items after this id (id order).
    pub after: Option<String>,
    pub limit: u32,
}

impl ItemFilter {
    pub fn parse(query: Option<&str>) -> Result<Self, FilterError> {
        let params = Params::parse(query, &["failed", "skipped", "cursor", "limit"])?;
        let after = params.cursor(|text| is_id(text).then(|| text.to_string()))?;
        Ok(Self {
            failed_only: params.flag("failed")?,
            skipped_only: params.flag("skipped")?,
            after,
            limit: params.limit()?,
        })
    }

    /// The marker statuses listed (the values stored in `items/{item}.status`).
    pub fn statuses(&self) -> Vec<&'static str> {
        match (self.failed_only, self.skipped_only) {
            (false, false) => vec!["pending", "failed", "skipped"],
            (true, false) => vec!["failed"],
            (false, true) => vec!["skipped"],
            (true, true) => vec!["failed", "skipped"],
        }
    }

    pub fn query_string(&self, after: Option<&str>) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        if self.failed_only {
            query.append_pair("failed", "1");
        }
        if self.skipped_only {
            query.append_pair("skipped", "1");
        }
        if self.limit != DEFAULT_PAGE_SIZE {
            query.append_pair("limit", &self.limit.to_string());
        }
        if let Some(after) = after {
            query.append_pair("cursor", after);
        }
        query.finish()
    }
}

/// `/audit`: records of one date and/or outcome, newest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditFilter {
    pub game_date: Option<GameDate>,
    pub outcome: Option<AuditOutcome>,
    pub cursor: Option<Cursor>,
    pub limit: u32,
}

impl AuditFilter {
    pub fn parse(query: Option<&str>) -> Result<Self, FilterError> {
        let params = Params::parse(query, &["game_date", "outcome", "cursor", "limit"])?;
        let outcome = params
            .get("outcome")
            .map(|v| {
                serde_json::from_value(serde_json::Value::String(v.to_string())).map_err(|_| {
                    invalid("outcome", format!("{v:?} is not started, superseding, resumed, no_op or rejected"))
                })
            })
            .transpose()?;
        let cursor = params.cursor(|text| Cursor::decode(text, false))?;
        Ok(Self { game_date: params.date("game_date")?, outcome, cursor, limit: params.limit()? })
    }

    pub fn query_string(&self, cursor: Option<&str>) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        if let Some(date) = self.game_date {
            query.append_pair("game_date", &date.to_string());
        }
        if let Some(outcome) = self.outcome {
            query.append_pair("outcome", outcome.as_str());
        }
        if self.limit != DEFAULT_PAGE_SIZE {
            query.append_pair("limit", &self.limit.to_string());
        }
        if let Some(cursor) = cursor {
            query.append_pair("cursor", cursor);
        }
        query.finish()
    }
}

/// `/dead-letters`: records of one channel, newest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeadLetterFilter {
    pub channel: Option<&'static str>,
    pub cursor: Option<Cursor>,
    pub limit: u32,
}

impl DeadLetterFilter {
    pub fn parse(query: Option<&str>) -> Result<Self, FilterError> {
        let params = Params::parse(query, &["channel", "cursor", "limit"])?;
        let channel = params
            .get("channel")
            .map(|v| {
                CHANNELS
                    .into_iter()
                    .find(|c| *c == v)
                    .ok_or_else(|| invalid("channel", format!("{v:?} is not one of {}", CHANNELS.join(", "))))
            })
            .transpose()?;
        let cursor = params.cursor(|text| Cursor::decode(text, false))?;
        Ok(Self { channel, cursor, limit: params.limit()? })
    }

    pub fn query_string(&self, cursor: Option<&str>) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        if let Some(channel) = self.channel {
            query.append_pair("channel", channel);
        }
        if self.limit != DEFAULT_PAGE_SIZE {
            query.append_pair("limit", &self.limit.to_string());
        }
        if let Some(cursor) = cursor {
            query.append_pair("cursor", cursor);
        }
        query.finish()
    }
}

/// Columns the predictions table of a date sorts by (server-side, so it works without JavaScript).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SortColumn {
    #[default]
    Player,
    Team,
    Stat,
    Line,
    Projection,
    POver,
    Edge,
    Pick,
    Confidence,
}

impl SortColumn {
    pub const ALL: [SortColumn; 9] = [
        Self::Player,
        Self::Team,
        Self::Stat,
        Self::Line,
        Self::Projection,
        Self::POver,
        Self::Edge,
        Self::Pick,
        Self::Confidence,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Player => "player",
            Self::Team => "team",
            Self::Stat => "stat",
            Self::Line => "line",
            Self::Projection => "projection",
            Self::POver => "p_over",
            Self::Edge => "edge",
            Self::Pick => "pick",
            Self::Confidence => "confidence",
        }
    }
}

/// `/dates/{date}`: how to sort its predictions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DateView {
    pub sort: SortColumn,
    pub descending: bool,
}

impl DateView {
    pub fn parse(query: Option<&str>) -> Result<Self, FilterError> {
        let params = Params::parse(query, &["sort", "dir"])?;
        let sort = params
            .get("sort")
            .map(|v| {
                SortColumn::ALL.into_iter().find(|c| c.as_str() == v).ok_or_else(|| {
                    invalid("sort", format!("{v:?} is not one of {}", SortColumn::ALL.map(|c| c.as_str()).join(", ")))
                })
            })
            .transpose()?
            .unwrap_or_default();
        let descending = match params.get("dir") {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(other) => return Err(invalid("dir", format!("{other:?} is not asc or desc"))),
        };
        Ok(Self { sort, descending })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blank_query_means_the_defaults() {
        assert_eq!(BatchFilter::parse(None).unwrap(), BatchFilter { limit: DEFAULT_PAGE_SIZE, ..Default::default() });
        let blank = BatchFilter::parse(Some("from=&to=&state=&text=&limit=")).unwrap();
        assert_eq!(blank.limit, DEFAULT_PAGE_SIZE);
        assert!(!blank.by_date());
    }

    #[test]
    fn batch_filters_parse_and_round_trip() {
        let filter =
            BatchFilter::parse(Some("from=2024-04-01&to=2024-04-30&state=running&text=injury+news&limit=50")).unwrap();
        assert_eq!(filter.state, Some(BatchState::Running));
        assert_eq!(filter.text.as_deref(), Some("injury news"));
        assert!(filter.by_date());
        let cursor = Cursor {
            key: Some("2024-04-22".into()),
            at: FirestoreInstant::new(1_700_000_000, 123).unwrap(),
            id: "2024-04-22-m17".into(),
        };
        let again = BatchFilter::parse(Some(&filter.query_string(Some(&cursor.encode())))).unwrap();
        assert_eq!(again, BatchFilter { cursor: Some(cursor), ..filter });
    }

    #[test]
    fn bad_batch_filters_say_what_is_wrong() {
        let error = |q: &str| BatchFilter::parse(Some(q)).unwrap_err().to_string();
        assert_eq!(error("limit=100000"), "invalid `limit`: \"100000\" is not a page size from 1 to 200");
        assert!(error("limit=0").contains("page size"));
        assert!(error("limit=-1").contains("page size"));
        assert!(error("from=2024-13-01").contains("not a YYYY-MM-DD date"));
        assert!(error("from=2024-05-01&to=2024-04-01").contains("before"));
        assert!(error("state=DONE").contains("PUBLISHING, RUNNING"));
        assert_eq!(error("sate=RUNNING"), "unknown parameter `sate`");
        assert_eq!(error("state=RUNNING&state=FAILED"), "parameter `state` is given twice");
        assert!(error("cursor=garbage").contains("cursor"));
        assert!(error(&format!("text={}", "x".repeat(201))).contains("longer"));
        // A cursor made for an unranged list does not fit a list ordered by date.
        assert!(error("from=2024-04-01&cursor=1700000000.000000000~b1").contains("cursor"));
    }

    #[test]
    fn item_filters() {
        let filter = ItemFilter::parse(Some("failed=1&cursor=player0042&limit=10")).unwrap();
        assert_eq!(
            filter,
            ItemFilter { failed_only: true, skipped_only: false, after: Some("player0042".into()), limit: 10 }
        );
        assert_eq!(filter.statuses(), vec!["failed"]);
        let skipped = ItemFilter::parse(Some("skipped=1")).unwrap();
        assert_eq!(skipped.statuses(), vec!["skipped"]);
        assert_eq!(ItemFilter::parse(Some(&skipped.query_string(None))).unwrap(), skipped);
        assert_eq!(ItemFilter::parse(Some("failed=1&skipped=1")).unwrap().statuses(), vec!["failed", "skipped"]);
        assert_eq!(ItemFilter::parse(None).unwrap().statuses(), vec!["pending", "failed", "skipped"]);
        assert!(ItemFilter::parse(Some("skipped=yes")).is_err());
        assert_eq!(ItemFilter::parse(Some(&filter.query_string(Some("p9")))).unwrap().after.as_deref(), Some("p9"));
        assert!(ItemFilter::parse(Some("failed=maybe")).is_err());
        assert!(ItemFilter::parse(Some("cursor=a/b")).is_err(), "not an id");
    }

    #[test]
    fn audit_and_dead_letter_filters() {
        let audit = AuditFilter::parse(Some("game_date=2024-04-22&outcome=no_op")).unwrap();
        assert_eq!(audit.outcome, Some(AuditOutcome::NoOp));
        assert_eq!(AuditFilter::parse(Some(&audit.query_string(None))).unwrap(), audit);
        assert!(AuditFilter::parse(Some("outcome=maybe")).unwrap_err().to_string().contains("no_op"));
        let dead = DeadLetterFilter::parse(Some("channel=request&limit=200")).unwrap();
        assert_eq!((dead.channel, dead.limit), (Some("request"), 200));
        assert!(DeadLetterFilter::parse(Some("channel=requests")).is_err());
    }

    #[test]
    fn date_views_sort_by_known_columns() {
        assert_eq!(DateView::parse(None).unwrap(), DateView::default());
        let view = DateView::parse(Some("sort=edge&dir=desc")).unwrap();
        assert_eq!((view.sort, view.descending), (SortColumn::Edge, true));
        assert!(DateView::parse(Some("sort=salary")).is_err());
        assert!(DateView::parse(Some("dir=up")).is_err());
    }
}
