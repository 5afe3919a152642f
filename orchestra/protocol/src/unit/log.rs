//! The two log formats' layout, used by [`super::cli::init_tracing`]: one event per line,
//! fields as plain values.
//!
//! tracing-subscriber's own formatters print `%` fields and messages as they are (an ffmpeg
//! error spans several lines), string fields Debug-quoted, and its JSON format turns any
//! non-primitive field into a string of its Debug output. tracing's `Value` is sealed, so a
//! list cannot be recorded as a list: [`List`] writes a marked JSON array that only these
//! formatters recognise (a comma list for people, an array in JSON).

use std::fmt;
use std::io::Write as _;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

use super::cli::LogFormat;

/// Starts a [`List`]'s text: ASCII "record separator", which no other value starts with (the
/// formatters escape control characters in every other value).
const LIST_MARK: char = '\u{1e}';

/// A list field, `queues = %List(&queues)`: `queues=transform,gpu` for people,
/// `"queues":["transform","gpu"]` in JSON.
pub struct List<'a, T>(pub &'a [T]);

impl<T: fmt::Display> fmt::Display for List<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let items: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        let json = serde_json::to_string(&items).map_err(|_| fmt::Error)?;
        write!(f, "{LIST_MARK}{json}")
    }
}

fn as_list(text: &str) -> Option<Vec<String>> {
    serde_json::from_str(text.strip_prefix(LIST_MARK)?).ok()
}

/// `text` on one line: newlines, tabs and other control characters (ANSI escapes included)
/// written as escapes.
fn escaped(text: &str, out: &mut impl fmt::Write) -> fmt::Result {
    for c in text.chars() {
        match c {
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            c if c.is_control() => write!(out, "\\u{{{:x}}}", c as u32)?,
            c => out.write_char(c)?,
        }
    }
    Ok(())
}

/// Fields for people: `message key=value key=a,b`, each value as it reads, on one line.
pub struct HumanFields;

impl<'w> FormatFields<'w> for HumanFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut visitor = HumanVisitor {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct HumanVisitor<'w> {
    writer: Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl HumanVisitor<'_> {
    fn write(&mut self, field: &Field, text: &str) {
        if self.result.is_err() {
            return;
        }
        let separator = if self.first { "" } else { " " };
        self.first = false;
        self.result = (|| {
            self.writer.write_str(separator)?;
            if field.name() != "message" {
                write!(self.writer, "{}=", field.name())?;
            }
            match as_list(text) {
                Some(items) => escaped(&items.join(","), &mut self.writer),
                None => escaped(text, &mut self.writer),
            }
        })();
    }
}

impl Visit for HumanVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.write(field, value);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.write(field, &value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.write(field, &format!("{value:?}"));
    }
}

/// Fields as a JSON object: numbers and booleans as such, [`List`]s as arrays, anything else
/// as a string (JSON escapes control characters inside strings).
#[derive(Default)]
struct JsonVisitor(Map<String, Value>);

impl JsonVisitor {
    fn insert(&mut self, field: &Field, value: Value) {
        self.0.insert(field.name().to_owned(), value);
    }
}

impl Visit for JsonVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.insert(field, Value::from(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.insert(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.insert(field, Value::from(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.insert(field, Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.insert(field, Value::from(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.insert(field, Value::from(value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        let value = match as_list(&text) {
            Some(items) => Value::from(items),
            None => Value::from(text),
        };
        self.insert(field, value);
    }
}

/// A span's fields in JSON format, kept as a JSON object's text.
pub struct JsonFields;

impl<'w> FormatFields<'w> for JsonFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut visitor = JsonVisitor::default();
        fields.record(&mut visitor);
        write!(writer, "{}", Value::Object(visitor.0))
    }

    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let mut visitor = JsonVisitor(object(&current.fields));
        fields.record(&mut visitor);
        current.fields = Value::Object(visitor.0).to_string();
        Ok(())
    }
}

fn object(text: &str) -> Map<String, Value> {
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

/// One JSON object per line, shaped as tracing-subscriber's JSON format: `timestamp`,
/// `level`, `fields` (with `message`), `target`, and within spans `span` (the innermost) and
/// `spans` (outermost first), each with its `name` and fields.
pub struct JsonEvent;

impl<S> FormatEvent<S, JsonFields> for JsonEvent
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut fields = JsonVisitor::default();
        event.record(&mut fields);
        let mut line = head(meta.level().as_str(), fields.0, meta.target());
        if let Some(scope) = ctx.event_scope() {
            let spans: Vec<Value> = scope
                .from_root()
                .map(|span| {
                    let mut map = Map::new();
                    map.insert("name".into(), Value::from(span.name()));
                    if let Some(kept) = span.extensions().get::<FormattedFields<JsonFields>>() {
                        map.extend(object(&kept.fields));
                    }
                    Value::Object(map)
                })
                .collect();
            if let Some(last) = spans.last() {
                line.insert("span".into(), last.clone());
            }
            line.insert("spans".into(), Value::from(spans));
        }
        writeln!(writer, "{}", Value::Object(line))
    }
}

fn timestamp() -> String {
    let mut text = String::new();
    let _ = SystemTime.format_time(&mut Writer::new(&mut text));
    text
}

fn head(level: &str, fields: Map<String, Value>, target: &str) -> Map<String, Value> {
    let mut line = Map::new();
    line.insert("timestamp".into(), Value::from(timestamp()));
    line.insert("level".into(), Value::from(level));
    line.insert("fields".into(), Value::Object(fields));
    line.insert("target".into(), Value::from(target));
    line
}

/// Writes one warning to stderr in `format`, past `RUST_LOG`'s filter: for what must reach
/// the operator exactly once whatever the level (the generated root secret).
pub fn announce(format: LogFormat, target: &str, message: &str, fields: &[(&str, &str)]) {
    let line = match format {
        LogFormat::Json => {
            let mut map = Map::new();
            map.insert("message".into(), Value::from(message));
            for (name, value) in fields {
                map.insert((*name).into(), Value::from(*value));
            }
            Value::Object(head("WARN", map, target)).to_string()
        }
        LogFormat::Human => {
            let mut line = format!("{}  WARN {target}: ", timestamp());
            let _ = escaped(message, &mut line);
            for (name, value) in fields {
                line.push(' ');
                line.push_str(name);
                line.push('=');
                let _ = escaped(value, &mut line);
            }
            line
        }
    };
    // One write of the whole line, so it is not interleaved with another thread's event.
    let _ = std::io::stderr()
        .lock()
        .write_all(format!("{line}\n").as_bytes());
}

/// Colour only for a person at a terminal who has not asked for none (no-color.org).
pub fn colour() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_control_characters() {
        let mut out = String::new();
        escaped("a\nb\r\tc\u{1b}[31m", &mut out).unwrap();
        assert_eq!(out, "a\\nb\\r\\tc\\u{1b}[31m");
    }

    #[test]
    fn lists_are_recognised() {
        let text = List(&["transform", "gpu"]).to_string();
        assert_eq!(
            as_list(&text),
            Some(vec!["transform".to_owned(), "gpu".to_owned()])
        );
        assert_eq!(as_list("[\"transform\"]"), None);
    }
}
