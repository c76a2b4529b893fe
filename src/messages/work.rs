//! The engine's own messages: a request per item (fan-out), a completion per item (fan-in), and the
//! ready announcement of a consolidated batch.

use serde::{Deserialize, Serialize};

use super::{GameDate, InvalidMessage, parse_json};

/// Longest error text carried in a completion; the rest is cut (the worker logs it whole).
pub const MAX_ERROR_CHARS: usize = 2000;

/// Fan-out: one per item of a batch. `item` is the item id, `player_lookup` on the wire (the design's
/// name for it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestMessage {
    pub batch_id: String,
    pub generation: u64,
    pub game_date: GameDate,
    #[serde(rename = "player_lookup")]
    pub item: String,
    #[serde(default)]
    pub correlation_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompletionStatus {
    Ok,
    Failed,
    /// The domain declined the item (`error` says why): terminal, but not a failure.
    Skipped,
}

/// Fan-in: a worker's report on one item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompletionMessage {
    pub batch_id: String,
    pub generation: u64,
    /// The item id (`player_lookup` on the wire, the design's name).
    #[serde(rename = "player_lookup")]
    pub item: String,
    pub status: CompletionStatus,
    /// How many results the item produced (`predictions_count` on the wire).
    #[serde(default, rename = "predictions_count")]
    pub results_count: u64,
    /// Why the item failed, or why it was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The worker recorded the item itself (marker, result and shard in one commit): the coordinator
    /// only decides whether to check wholeness. Absent (false) in the older shape, which the
    /// coordinator records as before.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recorded: bool,
    /// With `recorded`: the item's counter shard's count of items not yet terminal right after the
    /// worker's commit; absent when unknown (a re-announcement of an item found terminal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard_remaining: Option<i64>,
}

/// The announcement of a consolidated batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadyMessage {
    pub game_date: GameDate,
    pub batch_id: String,
    pub generation: u64,
    /// Results of the batch's done items (`predictions_count` on the wire).
    #[serde(rename = "predictions_count")]
    pub results_count: u64,
    pub failed_count: u64,
}

macro_rules! json_message {
    ($($message:ty),*) => {$(
        impl $message {
            pub fn parse(body: &[u8]) -> Result<Self, InvalidMessage> {
                let message: Self = parse_json(body)?;
                message.validate()?;
                Ok(message)
            }

            pub fn to_json(&self) -> String {
                // Plain strings and numbers: serialization cannot fail.
                serde_json::to_string(self).unwrap_or_default()
            }
        }
    )*};
}

json_message!(RequestMessage, CompletionMessage, ReadyMessage);

impl RequestMessage {
    fn validate(&self) -> Result<(), InvalidMessage> {
        validate_document_id("batch_id", &self.batch_id)?;
        validate_document_id("player_lookup", &self.item)
    }
}

impl CompletionMessage {
    fn validate(&self) -> Result<(), InvalidMessage> {
        validate_document_id("batch_id", &self.batch_id)?;
        validate_document_id("player_lookup", &self.item)
    }

    /// A failed completion with its error cut to [`MAX_ERROR_CHARS`].
    pub fn failed(request: &RequestMessage, error: &str) -> Self {
        Self {
            batch_id: request.batch_id.clone(),
            generation: request.generation,
            item: request.item.clone(),
            status: CompletionStatus::Failed,
            results_count: 0,
            error: Some(error.chars().take(MAX_ERROR_CHARS).collect()),
            recorded: false,
            shard_remaining: None,
        }
    }

    /// A skipped completion: the domain declined the item for `reason` (cut to [`MAX_ERROR_CHARS`]).
    pub fn skipped(request: &RequestMessage, reason: &str) -> Self {
        Self { status: CompletionStatus::Skipped, ..Self::failed(request, reason) }
    }

    pub fn ok(request: &RequestMessage, results_count: u64) -> Self {
        Self {
            batch_id: request.batch_id.clone(),
            generation: request.generation,
            item: request.item.clone(),
            status: CompletionStatus::Ok,
            results_count,
            error: None,
            recorded: false,
            shard_remaining: None,
        }
    }

    /// This completion as the announcement of an item its worker recorded, with its shard's count
    /// left after the commit (`None`: unknown).
    pub fn announced(self, shard_remaining: Option<i64>) -> Self {
        Self { recorded: true, shard_remaining, ..self }
    }
}

impl ReadyMessage {
    fn validate(&self) -> Result<(), InvalidMessage> {
        validate_document_id("batch_id", &self.batch_id)
    }
}

/// Ids become Firestore document ids: at most 1500 bytes, no `/`, not `.`/`..`, not `__*__`.
pub fn validate_document_id(field: &'static str, id: &str) -> Result<(), InvalidMessage> {
    let ok = !id.is_empty()
        && id.len() <= 1500
        && !id.contains('/')
        && id != "."
        && id != ".."
        && !(id.starts_with("__") && id.ends_with("__"));
    if ok { Ok(()) } else { Err(InvalidMessage::DocumentId { field, id: id.chars().take(100).collect() }) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_in_the_design_shape() {
        let request = RequestMessage::parse(
            br#"{"batch_id":"b1","generation":2,"game_date":"2024-04-22","player_lookup":"lebronjames","correlation_id":"c"}"#,
        )
        .unwrap();
        assert_eq!(RequestMessage::parse(request.to_json().as_bytes()).unwrap(), request);

        let failed = CompletionMessage::failed(&request, &"x".repeat(3000));
        let skipped = CompletionMessage::skipped(&request, "1 usable games before the game date, 3 required");
        assert_eq!(
            skipped.to_json(),
            r#"{"batch_id":"b1","generation":2,"player_lookup":"lebronjames","status":"skipped","predictions_count":0,"error":"1 usable games before the game date, 3 required"}"#
        );
        assert_eq!(CompletionMessage::parse(skipped.to_json().as_bytes()).unwrap(), skipped);
        assert_eq!(failed.error.as_ref().map(String::len), Some(MAX_ERROR_CHARS));
        let text = CompletionMessage::ok(&request, 4).to_json();
        assert_eq!(
            text,
            r#"{"batch_id":"b1","generation":2,"player_lookup":"lebronjames","status":"ok","predictions_count":4}"#
        );

        let ready = ReadyMessage::parse(
            br#"{"game_date":"2024-04-22","batch_id":"b1","generation":2,"predictions_count":10,"failed_count":1}"#,
        )
        .unwrap();
        assert_eq!(ready.failed_count, 1);
    }

    #[test]
    fn an_announcement_carries_its_record_and_the_older_shape_still_parses() {
        let request = RequestMessage::parse(
            br#"{"batch_id":"b1","generation":2,"game_date":"2024-04-22","player_lookup":"p","correlation_id":"c"}"#,
        )
        .unwrap();
        let announced = CompletionMessage::ok(&request, 4).announced(Some(0));
        assert_eq!(
            announced.to_json(),
            r#"{"batch_id":"b1","generation":2,"player_lookup":"p","status":"ok","predictions_count":4,"recorded":true,"shard_remaining":0}"#
        );
        assert_eq!(CompletionMessage::parse(announced.to_json().as_bytes()).unwrap(), announced);
        let older = CompletionMessage::parse(br#"{"batch_id":"b1","generation":2,"player_lookup":"p","status":"ok"}"#);
        let older = older.unwrap();
        assert_eq!((older.recorded, older.shard_remaining), (false, None), "recorded by the coordinator");
        let unknown = CompletionMessage::ok(&request, 4).announced(None).to_json();
        assert!(unknown.ends_with(r#""recorded":true}"#), "{unknown}");
    }

    #[test]
    fn rejects_ids_firestore_cannot_store() {
        for bad in ["", "a/b", ".", "..", "__reserved__"] {
            let body = format!(r#"{{"batch_id":"b","generation":1,"player_lookup":"{bad}","status":"ok"}}"#);
            assert!(
                matches!(CompletionMessage::parse(body.as_bytes()), Err(InvalidMessage::DocumentId { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn rejects_an_unknown_status() {
        let body = br#"{"batch_id":"b","generation":1,"player_lookup":"p","status":"maybe"}"#;
        assert!(
            matches!(CompletionMessage::parse(body), Err(InvalidMessage::Json(m)) if m.contains("unknown variant"))
        );
    }
}
