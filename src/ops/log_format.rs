//! One JSON object per line in the shape Cloud Logging parses from a container's output: `severity`,
//! `message`, `time` (RFC 3339), `target`, then the fields of every span in scope (outermost
//! first) and the event's own fields, all at the top level, so `jsonPayload.batch_id` can be queried.
//!
//! The entry's time is `time`: Cloud Logging reads an RFC 3339 string under that key, while its
//! `timestamp` key wants a `{seconds, nanos}` object, so a string there would not set the entry's time.
//! `timestamp` stays reserved so that an event field cannot be mistaken for it.
//!
//! Written here rather than taken from `tracing-stackdriver` (0.10): that crate nests span fields under
//! `span`/`spans` instead of flattening them and renames fields to camelCase (`batch_id` becomes
//! `batchId`), which would break the field names operators query.
//!
//! Span fields come from the JSON that tracing-subscriber's `JsonFields` stores on each span, so the
//! subscriber must use `.fmt_fields(JsonFields::new())` (see [`CloudLogging`]).

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Keys this formatter writes itself; a field of the same name is dropped rather than written twice.
const RESERVED: [&str; 5] = ["severity", "message", "time", "timestamp", "target"];

/// The event formatter. Use with `tracing_subscriber::fmt().fmt_fields(JsonFields::new()).event_format(CloudLogging)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct CloudLogging;

/// Cloud Logging's `LogSeverity` names; it has no TRACE.
pub fn severity(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        Level::DEBUG | Level::TRACE => "DEBUG",
    }
}

impl<S> FormatEvent<S, JsonFields> for CloudLogging
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Map::new();
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                let Some(stored) = extensions.get::<FormattedFields<JsonFields>>() else { continue };
                // JsonFields stores an object, or an empty string for a span without fields.
                if let Ok(Value::Object(span_fields)) = serde_json::from_str::<Value>(stored.as_str()) {
                    fields.extend(span_fields);
                }
            }
        }
        let mut visitor = EventFields { message: String::new(), fields };
        event.record(&mut visitor);
        let metadata = event.metadata();
        let line =
            render(severity(metadata.level()), &visitor.message, &now_rfc3339(), metadata.target(), visitor.fields);
        writeln!(writer, "{line}")
    }
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// The line without its newline: the fixed keys first (readable when tailing), then the fields.
fn render(severity: &str, message: &str, time: &str, target: &str, fields: Map<String, Value>) -> String {
    let fixed = [("severity", severity), ("message", message), ("time", time), ("target", target)];
    let fixed = fixed.into_iter().map(|(key, value)| (key.to_string(), Value::from(value)));
    let fields = fields.into_iter().filter(|(key, _)| !RESERVED.contains(&key.as_str()));
    let mut text = String::from("{");
    for (key, value) in fixed.chain(fields) {
        if text.len() > 1 {
            text.push(',');
        }
        // Serializing a string or a Value cannot fail; Display is serde_json's own writer.
        text.push_str(&Value::String(key).to_string());
        text.push(':');
        text.push_str(&value.to_string());
    }
    text.push('}');
    text
}

/// Collects an event's fields; later ones (the event's) override the spans' of the same name.
struct EventFields {
    message: String,
    fields: Map<String, Value>,
}

impl EventFields {
    fn insert(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            self.message = match value {
                Value::String(text) => text,
                other => other.to_string(),
            };
        } else {
            self.fields.insert(field.name().to_string(), value);
        }
    }
}

impl Visit for EventFields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.insert(field, serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.insert(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.insert(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.insert(field, value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.insert(field, value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.insert(field, value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `%value` fields arrive here too, wrapped so that Debug prints their Display.
        self.insert(field, format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    /// Runs `emit` under a subscriber using [`CloudLogging`] and returns the parsed lines.
    fn capture(emit: impl FnOnce()) -> Vec<Map<String, Value>> {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(Level::DEBUG)
            .fmt_fields(JsonFields::new())
            .event_format(CloudLogging)
            .with_writer(buffer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|line| match serde_json::from_str(line) {
                Ok(Value::Object(object)) => object,
                other => panic!("not a JSON object: {line:?} ({other:?})"),
            })
            .collect()
    }

    #[test]
    fn span_fields_are_flattened_next_to_the_event_fields() {
        let lines = capture(|| {
            let consumer =
                tracing::info_span!("message", subscription = "prediction-requests-worker", message_id = "42");
            let _consumer = consumer.enter();
            let batch = tracing::info_span!(
                "batch",
                batch_id = "2024-04-22-m1",
                generation = 3u64,
                correlation_id = tracing::field::Empty
            );
            batch.record("correlation_id", "corr-7");
            let _batch = batch.enter();
            let error = io::Error::other("boom");
            tracing::warn!(item = "lebron", %error, attempts = 2, "item failed permanently");
        });
        assert_eq!(lines.len(), 1);
        let line = &lines[0];
        assert_eq!(line["severity"], "WARNING");
        assert_eq!(line["message"], "item failed permanently");
        assert_eq!(line["target"], module_path!());
        assert_eq!(line["subscription"], "prediction-requests-worker");
        assert_eq!(line["message_id"], "42");
        assert_eq!(line["batch_id"], "2024-04-22-m1");
        assert_eq!(line["generation"], 3);
        assert_eq!(line["correlation_id"], "corr-7");
        assert_eq!(line["item"], "lebron");
        assert_eq!(line["error"], "boom");
        assert_eq!(line["attempts"], 2);
        let time = line["time"].as_str().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok(), "{time}");
    }

    #[test]
    fn severities_follow_cloud_logging_names() {
        let lines = capture(|| {
            tracing::debug!("d");
            tracing::info!("i");
            tracing::warn!("w");
            tracing::error!("e");
        });
        let severities: Vec<_> = lines.iter().map(|l| l["severity"].as_str().unwrap().to_string()).collect();
        assert_eq!(severities, ["DEBUG", "INFO", "WARNING", "ERROR"]);
        assert_eq!(severity(&Level::TRACE), "DEBUG");
    }

    #[test]
    fn event_fields_win_over_span_fields_and_reserved_keys_stay_reserved() {
        let lines = capture(|| {
            let _span = tracing::info_span!("outer", item = "from-span", severity = "bogus").entered();
            tracing::info!(item = "from-event", time = "bogus", timestamp = "bogus", "hello \"quoted\"");
        });
        let line = &lines[0];
        assert_eq!(line["item"], "from-event");
        assert_eq!(line["severity"], "INFO");
        assert_eq!(line["message"], "hello \"quoted\"");
        assert_ne!(line["time"], "bogus");
        assert!(!line.contains_key("timestamp"), "{line:?}");
    }

    #[test]
    fn fixed_keys_come_first_and_everything_is_escaped() {
        let mut fields = Map::new();
        fields.insert("odd\"key".into(), 1.into());
        fields.insert("severity".into(), "dropped".into());
        let line = render("INFO", "say \"hi\"\n", "2026-01-01T00:00:00Z", "t", fields);
        assert_eq!(
            line,
            r#"{"severity":"INFO","message":"say \"hi\"\n","time":"2026-01-01T00:00:00Z","target":"t","odd\"key":1}"#
        );
    }

    #[test]
    fn an_event_outside_spans_has_only_its_own_fields() {
        let lines = capture(|| tracing::info!(http_addr = %"127.0.0.1:8080", "http listening"));
        let keys: Vec<_> = lines[0].keys().cloned().collect();
        assert_eq!(keys.len(), 5, "{keys:?}");
        assert_eq!(lines[0]["http_addr"], "127.0.0.1:8080");
    }
}
