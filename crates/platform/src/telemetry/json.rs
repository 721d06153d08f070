//! The log line format: a [`JsonLayer`] writes each event as one JSON object, formatted on the calling
//! thread straight into a reusable buffer; a span's fields are encoded once, when recorded, and copied
//! onto every line inside it.
//!
//! Key order is fixed: `timestamp`, `level`, `target`, the event's fields, `message`, then the fields
//! of each enclosing span, innermost first. A name is written once: an event's field hides a span's of
//! that name, and an inner span's an outer one's.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::io::Write;
use std::ops::Range;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber, span};
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use super::ErrorChain;

/// Where [`FieldVisitor`] puts each field it JSON-encodes: a span's [`SpanFields`], or the [`Line`] of
/// an event.
trait FieldSink {
    /// Takes the field `name`, whose value `encode` appends, JSON-encoded, to the buffer it is given.
    fn field(&mut self, name: &'static str, encode: impl FnOnce(&mut Vec<u8>));
}

/// JSON-encodes every field of an event or a span into a [`FieldSink`], by the field's type: one
/// encoding for both, so a value looks the same whether it came from the event or a span.
struct FieldVisitor<'a, T>(&'a mut T);

impl<T: FieldSink> Visit for FieldVisitor<'_, T> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.field(field.name(), |out| encode_f64(out, value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.field(field.name(), |out| encode_display(out, value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.field(field.name(), |out| encode_display(out, value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.field(field.name(), |out| encode_display(out, value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.field(field.name(), |out| encode_str(out, value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .field(field.name(), |out| encode_string(out, ErrorChain(value)));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.field(field.name(), |out| {
            encode_string(out, format_args!("{value:?}"))
        });
    }
}

/// A span's fields, JSON-encoded when recorded and kept in its extensions: `values` holds the encoded
/// values back to back and `fields` each name with its range there, in recording order.
#[derive(Default)]
struct SpanFields {
    values: Vec<u8>,
    fields: Vec<(&'static str, Range<usize>)>,
}

impl SpanFields {
    fn record(&mut self, record: &dyn Fn(&mut dyn Visit)) {
        record(&mut FieldVisitor(self));
    }
}

impl FieldSink for SpanFields {
    fn field(&mut self, name: &'static str, encode: impl FnOnce(&mut Vec<u8>)) {
        // `otel.*` fields direct the span's export (its name, kind, status), they say nothing new.
        if name.starts_with("otel.") {
            return;
        }
        let start = self.values.len();
        encode(&mut self.values);
        self.fields.push((name, start..self.values.len()));
    }
}

/// A layer writing one JSON object per event.
pub struct JsonLayer<W> {
    writer: W,
    /// Set when traces are exported: each line inside a span then carries the span's `trace_id` and
    /// `span_id`, read through the dispatcher the layer is part of (set once it is built).
    trace_ids: Option<DispatchSlot>,
}

impl<W> JsonLayer<W> {
    pub fn new(writer: W) -> Self {
        Self {
            writer,
            trace_ids: None,
        }
    }

    /// Lines inside a span carry the OpenTelemetry `trace_id` and `span_id` of that span, which `slot`
    /// (filled with the dispatcher this layer ends up in) is asked for.
    pub fn with_trace_ids(mut self, slot: DispatchSlot) -> Self {
        self.trace_ids = Some(slot);
        self
    }

    fn ids_of<S>(&self, event: &Event<'_>, ctx: &Context<'_, S>) -> Option<TraceIds>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        use opentelemetry::trace::TraceContextExt as _;
        // Outside a span (most lines of requests that are not traced) there is nothing to look up.
        let span = ctx.event_span(event)?;
        let dispatch = self.trace_ids.as_ref()?.get()?.upgrade()?;
        let cx = tracing_opentelemetry::get_otel_context(&span.id(), &dispatch)?;
        let span = cx.span();
        let context = span.span_context();
        context.is_valid().then(|| TraceIds {
            trace_id: context.trace_id().to_string(),
            span_id: context.span_id().to_string(),
        })
    }
}

/// Where the dispatcher a layer is part of is put once it is built: a layer inside a dispatcher cannot
/// ask for it (`tracing` answers "none" while an event is being dispatched).
pub type DispatchSlot = std::sync::Arc<std::sync::OnceLock<tracing::dispatcher::WeakDispatch>>;

/// The OpenTelemetry ids a log line inside a traced span carries.
struct TraceIds {
    trace_id: String,
    span_id: String,
}

thread_local! {
    /// The line being formatted, reused so an event allocates nothing once the buffer has grown.
    static LINE: RefCell<Line> = RefCell::new(Line::default());
}

/// A line under construction and the names already written to it.
#[derive(Default)]
struct Line {
    out: Vec<u8>,
    message: Vec<u8>,
    written: Vec<&'static str>,
    /// The second of the last timestamp, and its text up to the fraction (`2026-12-06T04:50:34.`),
    /// so a line formats only its microseconds.
    second: Option<(i64, String)>,
}

impl Line {
    /// The current time in RFC 3339, UTC, to the microsecond, quoted.
    fn timestamp(&mut self) {
        let now = chrono::Utc::now();
        let second = now.timestamp();
        let prefix = match &self.second {
            Some((cached, prefix)) if *cached == second => prefix,
            _ => {
                let prefix = now.format("%Y-%m-%dT%H:%M:%S.").to_string();
                &self.second.insert((second, prefix)).1
            }
        };
        self.out.push(b'"');
        self.out.extend_from_slice(prefix.as_bytes());
        let micros = now.timestamp_subsec_micros().min(999_999);
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(micros);
        self.out.extend(std::iter::repeat_n(b'0', 6 - digits.len()));
        self.out.extend_from_slice(digits.as_bytes());
        self.out.extend_from_slice(b"Z\"");
    }
}

impl Line {
    /// Starts `"name":` unless the name is already on the line: a field of the event hides a span's
    /// field of that name, and an inner span's field an outer one's.
    fn key(&mut self, name: &'static str) -> bool {
        if self.written.contains(&name) {
            return false;
        }
        self.written.push(name);
        self.out.push(b',');
        encode_str(&mut self.out, name);
        self.out.push(b':');
        true
    }

    fn format<S>(&mut self, event: &Event<'_>, ctx: &Context<'_, S>, ids: Option<&TraceIds>)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        self.out.clear();
        self.message.clear();
        self.written.clear();
        let metadata = event.metadata();
        self.out.extend_from_slice(b"{\"timestamp\":");
        self.timestamp();
        self.out.extend_from_slice(b",\"level\":");
        encode_str(&mut self.out, level_name(*metadata.level()));
        self.out.extend_from_slice(b",\"target\":");
        encode_str(&mut self.out, metadata.target());
        self.written
            .extend_from_slice(&["timestamp", "level", "target", "message"]);
        event.record(&mut FieldVisitor(self));
        self.out.extend_from_slice(b",\"message\":");
        if self.message.is_empty() {
            self.out.extend_from_slice(b"\"\"");
        } else {
            self.out.extend_from_slice(&self.message);
        }
        if let Some(ids) = ids {
            self.out.extend_from_slice(b",\"trace_id\":");
            encode_str(&mut self.out, &ids.trace_id);
            self.out.extend_from_slice(b",\"span_id\":");
            encode_str(&mut self.out, &ids.span_id);
            self.written.extend_from_slice(&["trace_id", "span_id"]);
        }
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope {
                let extensions = span.extensions();
                let Some(fields) = extensions.get::<SpanFields>() else {
                    continue;
                };
                // Newest first, so a value recorded later replaces the one the span was created with.
                for (name, range) in fields.fields.iter().rev() {
                    if self.key(name) {
                        self.out.extend_from_slice(&fields.values[range.clone()]);
                    }
                }
            }
        }
        self.out.extend_from_slice(b"}\n");
    }
}

impl FieldSink for Line {
    /// The message is held back to follow the other fields; the rest go on the line in order.
    fn field(&mut self, name: &'static str, encode: impl FnOnce(&mut Vec<u8>)) {
        if name == "message" {
            encode(&mut self.message);
        } else if self.key(name) {
            encode(&mut self.out);
        }
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::TRACE => "trace",
        Level::DEBUG => "debug",
        Level::INFO => "info",
        Level::WARN => "warn",
        Level::ERROR => "error",
    }
}

/// A JSON number as serde_json writes it (shortest round-trip form; `null` when not finite).
fn encode_f64(out: &mut Vec<u8>, value: f64) {
    // Writing a number into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &value);
}

fn encode_display(out: &mut Vec<u8>, value: impl fmt::Display) {
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{value}");
}

/// `value` as a JSON string, formatted straight into `out` without an intermediate `String`.
fn encode_string(out: &mut Vec<u8>, value: impl fmt::Display) {
    out.push(b'"');
    // Escaping into a Vec cannot fail.
    let _ = write!(Escaped(out), "{value}");
    out.push(b'"');
}

fn encode_str(out: &mut Vec<u8>, value: &str) {
    out.push(b'"');
    escape_into(out, value);
    out.push(b'"');
}

/// Escapes as serde_json does: `"`, `\\` and control characters; everything else is copied as is.
fn escape_into(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    // Ids, routes and messages rarely need escaping; this check is a tight loop the compiler
    // vectorises, where the escaping loop below takes a branch per byte.
    if !bytes.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\') {
        out.extend_from_slice(bytes);
        return;
    }
    let mut start = 0;
    for (index, &byte) in bytes.iter().enumerate() {
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..index]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{byte:04x}");
        } else {
            out.extend_from_slice(escape);
        }
        start = index + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// A `fmt::Write` that JSON-escapes what it is given into a byte buffer.
struct Escaped<'a>(&'a mut Vec<u8>);

impl fmt::Write for Escaped<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        escape_into(self.0, text);
        Ok(())
    }
}

impl<S, W> Layer<S> for JsonLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        // The console and the log file are two layers over one registry; the first to see the span stores
        // its fields and the other reuses them (a second insert of the same type would panic).
        if extensions.get_mut::<SpanFields>().is_none() {
            let mut fields = SpanFields::default();
            fields.record(&|visitor| attrs.record(visitor));
            extensions.insert(fields);
        }
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(fields) = extensions.get_mut::<SpanFields>() {
            fields.record(&|visitor| values.record(visitor));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let ids = if self.trace_ids.is_some() {
            self.ids_of(event, &ctx)
        } else {
            None
        };
        let write = |line: &mut Line| {
            line.format(event, &ctx, ids.as_ref());
            // A log line that cannot be written has nowhere else to go.
            let _ = self.writer.make_writer().write_all(&line.out);
        };
        // A `Debug` impl that logs while being formatted would find the buffer taken: it gets a new one.
        LINE.with(|cell| match cell.try_borrow_mut() {
            Ok(mut line) => write(&mut line),
            Err(_) => write(&mut Line::default()),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::captured::Captured;
    use serde_json::Value;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn a_console_and_a_file_layer_can_log_the_same_span() {
        let console = Captured::default();
        let file = Captured::default();
        let subscriber = tracing_subscriber::registry()
            .with(JsonLayer::new(console.clone()))
            .with(JsonLayer::new(file.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", request_id = "r-2");
            let _entered = span.enter();
            tracing::info!("handled");
        });
        for captured in [console, file] {
            let bytes = captured.bytes();
            let line: Value = serde_json::from_slice(&bytes).expect("one JSON line");
            assert_eq!(line["request_id"], "r-2");
        }
    }

    /// The whole line, key order included: what log shippers and the tests of other crates read. The
    /// event's fields come before its message, then each span's fields, innermost span first and the
    /// latest recorded field of a span first.
    #[test]
    fn an_event_inside_spans_carries_its_fields_then_the_spans_fields_in_a_fixed_order() {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::registry().with(JsonLayer::new(captured.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let outer = tracing::info_span!("request", request_id = "r-3", user_id = 7);
            let _outer = outer.enter();
            let inner = tracing::info_span!("upstream", service = "orders", attempt = 1_u64);
            let _inner = inner.enter();
            tracing::info!(target: "shape", status = 200, elapsed_ms = 1.5, cached = false, "answered");
        });
        let bytes = captured.bytes();
        let text = String::from_utf8(bytes).expect("UTF-8");
        let (timestamp, rest) = text
            .strip_prefix("{\"timestamp\":\"")
            .and_then(|rest| rest.split_once('"'))
            .expect("a timestamp first");
        assert!(
            chrono::DateTime::parse_from_rfc3339(timestamp).is_ok(),
            "{text}"
        );
        assert_eq!(
            rest,
            ",\"level\":\"info\",\"target\":\"shape\",\"status\":200,\"elapsed_ms\":1.5,\
             \"cached\":false,\"message\":\"answered\",\"attempt\":1,\"service\":\"orders\",\
             \"user_id\":7,\"request_id\":\"r-3\"}\n"
        );
    }

    #[test]
    fn event_fields_hide_span_fields_of_the_same_name_and_text_is_escaped() {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::registry().with(JsonLayer::new(captured.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let outer = tracing::info_span!("outer", route = "/outer", tenant = "t-1");
            let _outer = outer.enter();
            let inner =
                tracing::info_span!("inner", route = "/inner", step = tracing::field::Empty);
            let _inner = inner.enter();
            inner.record("step", 2);
            tracing::info!(step = 3, note = %"quote \" backslash \\ newline \n tab \t bell \u{7}", "said \"hi\"");
        });
        let bytes = captured.bytes();
        let text = String::from_utf8(bytes).expect("utf-8");
        let line: Value = serde_json::from_str(&text).expect("one JSON line");
        assert_eq!(line["route"], "/inner");
        assert_eq!(line["tenant"], "t-1");
        assert_eq!(line["step"], 3);
        assert_eq!(line["message"], "said \"hi\"");
        assert_eq!(
            line["note"],
            "quote \" backslash \\ newline \n tab \t bell \u{7}"
        );
        assert_eq!(text.matches("\"route\"").count(), 1, "{text}");
    }
    #[derive(Debug, thiserror::Error)]
    #[error("query failed")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn every_line_carries_span_fields_event_fields_and_the_error_chain() {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::registry().with(JsonLayer::new(captured.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", request_id = "r-1");
            let _entered = span.enter();
            let err = Outer(std::io::Error::other("connection reset"));
            tracing::warn!(
                user_id = 7,
                error = &err as &dyn std::error::Error,
                "lookup failed"
            );
        });
        let bytes = captured.bytes();
        let line: Value = serde_json::from_slice(&bytes).expect("one JSON line");
        assert_eq!(line["level"], "warn");
        assert_eq!(line["message"], "lookup failed");
        assert_eq!(line["request_id"], "r-1");
        assert_eq!(line["user_id"], 7);
        assert_eq!(line["error"], "query failed: connection reset");
        assert!(line["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
    }

    #[test]
    fn timestamps_are_rfc_3339_utc_to_the_microsecond_across_seconds() {
        let mut line = Line::default();
        for _ in 0..3 {
            let before = chrono::Utc::now();
            line.out.clear();
            line.timestamp();
            let text = String::from_utf8(line.out.clone()).expect("UTF-8");
            let text = text.trim_matches('"');
            let parsed = chrono::DateTime::parse_from_rfc3339(text).expect("RFC 3339");
            assert_eq!(text.len(), "2026-12-06T04:50:34.613286Z".len(), "{text}");
            assert!(
                parsed >= before - chrono::Duration::microseconds(1),
                "{text}"
            );
            assert!(parsed <= chrono::Utc::now(), "{text}");
            // The cached second must not outlive its second.
            line.second = line
                .second
                .take()
                .map(|(second, prefix)| (second - 1, prefix));
        }
    }
}
