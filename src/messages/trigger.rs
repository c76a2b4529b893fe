//! The trigger: what an operator publishes to start or regenerate a batch for a game date.
//!
//! ```text
//! gcloud pubsub topics publish prediction-trigger \
//!   --message='{"game_date":"2024-04-22","mode":"start","reason":"morning run"}'
//! ```

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{GameDate, InvalidMessage, MAX_METADATA_BYTES, parse_json};

/// Longest free-text `reason` / `correlation_id` kept; longer is a mistake, not a reason.
pub const MAX_REASON_CHARS: usize = 1000;
pub const MAX_CORRELATION_ID_CHARS: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[clap(rename_all = "snake_case")]
pub enum TriggerMode {
    /// Start a batch for the date unless one is already active.
    #[default]
    Start,
    /// Start a new generation for the date and supersede the older batch.
    RegenerateWithSupersede,
}

impl TriggerMode {
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerMode::Start => "start",
            TriggerMode::RegenerateWithSupersede => "regenerate_with_supersede",
        }
    }
}

/// A validated trigger message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerMessage {
    pub game_date: GameDate,
    #[serde(default)]
    pub mode: TriggerMode,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
    /// Ties logs and records of one operator action together; the coordinator falls back to the
    /// trigger's message id when it is empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub correlation_id: String,
}

impl TriggerMessage {
    /// Parses and validates a message body.
    ///
    /// ```
    /// use props_pipeline::messages::{TriggerMessage, TriggerMode};
    /// let trigger = TriggerMessage::parse(br#"{"game_date":"2024-04-22","mode":"regenerate_with_supersede"}"#)?;
    /// assert_eq!(trigger.mode, TriggerMode::RegenerateWithSupersede);
    /// # Ok::<(), props_pipeline::messages::InvalidMessage>(())
    /// ```
    pub fn parse(body: &[u8]) -> Result<Self, InvalidMessage> {
        let trigger: Self = parse_json(body)?;
        trigger.validate()?;
        Ok(trigger)
    }

    /// Builds a trigger from its parts (the CLI's path), validating like [`TriggerMessage::parse`].
    pub fn new(
        game_date: &str,
        mode: TriggerMode,
        reason: String,
        metadata_json: Option<&str>,
        correlation_id: String,
    ) -> Result<Self, InvalidMessage> {
        let metadata = match metadata_json {
            None => Map::new(),
            Some(text) => match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(map)) => map,
                Ok(_) => return Err(InvalidMessage::MetadataNotObject),
                Err(e) => return Err(InvalidMessage::Json(format!("metadata: {e}"))),
            },
        };
        let trigger = Self { game_date: game_date.parse()?, mode, reason, metadata, correlation_id };
        trigger.validate()?;
        Ok(trigger)
    }

    /// `metadata.force == true` asks `start` to run even while a batch for the date is active.
    pub fn force(&self) -> bool {
        self.metadata.get("force").and_then(Value::as_bool).unwrap_or(false)
    }

    pub fn to_json(&self) -> String {
        // Serializing plain strings, a date and a JSON map cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    fn validate(&self) -> Result<(), InvalidMessage> {
        check_len("reason", &self.reason, MAX_REASON_CHARS)?;
        check_len("correlation_id", &self.correlation_id, MAX_CORRELATION_ID_CHARS)?;
        let metadata_size = serde_json::to_vec(&self.metadata).map(|v| v.len()).unwrap_or(usize::MAX);
        if metadata_size > MAX_METADATA_BYTES {
            return Err(InvalidMessage::MetadataTooLarge { size: metadata_size, max: MAX_METADATA_BYTES });
        }
        Ok(())
    }
}

fn check_len(field: &'static str, value: &str, max: usize) -> Result<(), InvalidMessage> {
    let len = value.chars().count();
    if len > max { Err(InvalidMessage::FieldTooLong { field, len, max }) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::MAX_MESSAGE_BYTES;

    #[test]
    fn parses_what_an_operator_types() {
        let body = br#"{"game_date":"2024-04-22","mode":"start","reason":"morning run","metadata":{"force":true},"correlation_id":"c-1"}"#;
        let trigger = TriggerMessage::parse(body).unwrap();
        assert_eq!(trigger.game_date.to_string(), "2024-04-22");
        assert_eq!(trigger.mode, TriggerMode::Start);
        assert_eq!(trigger.reason, "morning run");
        assert!(trigger.force());
        assert_eq!(trigger.correlation_id, "c-1");
    }

    #[test]
    fn mode_defaults_to_start_and_round_trips() {
        let trigger = TriggerMessage::parse(br#"{"game_date":"2024-04-22"}"#).unwrap();
        assert_eq!(trigger.mode, TriggerMode::Start);
        assert!(!trigger.force());
        assert_eq!(TriggerMessage::parse(trigger.to_json().as_bytes()).unwrap(), trigger);
    }

    #[test]
    fn rejects_a_bad_date() {
        let err = TriggerMessage::parse(br#"{"game_date":"2024-13-01"}"#).unwrap_err();
        assert!(matches!(err, InvalidMessage::Json(ref m) if m.contains("invalid game_date")), "{err}");
    }

    #[test]
    fn rejects_an_unknown_mode() {
        let err = TriggerMessage::parse(br#"{"game_date":"2024-04-22","mode":"restart"}"#).unwrap_err();
        assert!(matches!(err, InvalidMessage::Json(ref m) if m.contains("unknown variant `restart`")), "{err}");
    }

    #[test]
    fn rejects_misspelled_fields_instead_of_ignoring_them() {
        let err = TriggerMessage::parse(br#"{"game_date":"2024-04-22","reson":"typo"}"#).unwrap_err();
        assert!(matches!(err, InvalidMessage::Json(ref m) if m.contains("unknown field `reson`")), "{err}");
    }

    #[test]
    fn rejects_non_json_and_missing_date() {
        assert!(matches!(TriggerMessage::parse(b"start 2024-04-22"), Err(InvalidMessage::Json(_))));
        assert!(
            matches!(TriggerMessage::parse(br#"{"mode":"start"}"#), Err(InvalidMessage::Json(m)) if m.contains("game_date"))
        );
    }

    #[test]
    fn rejects_oversize_metadata() {
        let big = format!(r#"{{"blob":"{}"}}"#, "x".repeat(MAX_METADATA_BYTES));
        let err = TriggerMessage::new("2024-04-22", TriggerMode::Start, String::new(), Some(&big), String::new());
        assert!(matches!(err, Err(InvalidMessage::MetadataTooLarge { max: MAX_METADATA_BYTES, .. })), "{err:?}");
        let body = format!(r#"{{"game_date":"2024-04-22","metadata":{big}}}"#);
        assert!(matches!(TriggerMessage::parse(body.as_bytes()), Err(InvalidMessage::MetadataTooLarge { .. })));
    }

    #[test]
    fn rejects_oversize_messages_before_parsing() {
        let body = vec![b' '; MAX_MESSAGE_BYTES + 1];
        assert_eq!(
            TriggerMessage::parse(&body),
            Err(InvalidMessage::Oversize { size: MAX_MESSAGE_BYTES + 1, max: MAX_MESSAGE_BYTES })
        );
    }

    #[test]
    fn rejects_metadata_that_is_not_an_object() {
        let err = TriggerMessage::new("2024-04-22", TriggerMode::Start, String::new(), Some("[1,2]"), String::new());
        assert_eq!(err, Err(InvalidMessage::MetadataNotObject));
        let err =
            TriggerMessage::new("2024-04-22", TriggerMode::Start, String::new(), Some("{not json"), String::new());
        assert!(matches!(err, Err(InvalidMessage::Json(m)) if m.starts_with("metadata:")));
    }

    #[test]
    fn rejects_an_overlong_reason() {
        let err = TriggerMessage::new("2024-04-22", TriggerMode::Start, "r".repeat(1001), None, String::new());
        assert_eq!(err, Err(InvalidMessage::FieldTooLong { field: "reason", len: 1001, max: MAX_REASON_CHARS }));
    }
}
