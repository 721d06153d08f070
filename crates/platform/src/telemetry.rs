//! Structured logs: one JSON object per line with timestamp, level, target, message, the event's own
//! fields and the fields of every enclosing span (so `request_id` is on every line of a request).
//!
//! Lines are formatted on the calling thread straight into a reusable buffer and appended to an
//! in-memory batch; one writer thread per output writes the batch every `FLUSH_INTERVAL` (sooner once
//! it passes `FLUSH_AT_BYTES`), like nginx's `access_log … buffer= flush=`. A line per request
//! through a channel and a `write` per line (what `tracing_appender::non_blocking` does) cost the gateway
//! a syscall, a thread wake-up and a spinning receiver per request.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::io::Write;
use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber, span};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// The longest a line waits in memory before it is written.
const FLUSH_INTERVAL: Duration = Duration::from_millis(50);
/// Pending bytes that wake the writer before the interval is over, so bursts go out in large writes.
const FLUSH_AT_BYTES: usize = 64 * 1024;
/// Pending bytes past which new lines are dropped (and counted) instead of growing memory without
/// bound when the output cannot keep up.
const MAX_PENDING_BYTES: usize = 16 * 1024 * 1024;

/// Keeps the log writers flushing; hold it until the process exits. Dropping it writes what is pending.
#[must_use = "logs stop being written when the guard is dropped"]
pub struct LogGuard {
    _writers: Vec<WriterThread>,
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid log level {0:?}: {1}")]
    Level(String, String),
    #[error("cannot create log directory {0}: {1}")]
    Dir(String, std::io::Error),
    #[error("a global logger is already installed")]
    AlreadyInstalled,
}

/// Where console logs go: servers log to stdout; commands whose stdout is their result log to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Console {
    Stdout,
    Stderr,
}

/// Installs the global subscriber: JSON (or human-readable) lines on the console and, when `dir` is not
/// empty, a daily rolling file there as well.
pub fn init(
    level: &str,
    format: &str,
    dir: &str,
    file_prefix: &str,
    console: Console,
) -> Result<LogGuard, TelemetryError> {
    let filter = EnvFilter::try_new(level)
        .map_err(|e| TelemetryError::Level(level.into(), e.to_string()))?;
    let (stdout, stdout_thread) = match console {
        Console::Stdout => BatchWriter::spawn(std::io::stdout(), "log-stdout"),
        Console::Stderr => BatchWriter::spawn(std::io::stderr(), "log-stderr"),
    };
    let mut writers = vec![stdout_thread];
    let file_layer = if dir.is_empty() {
        None
    } else {
        std::fs::create_dir_all(dir).map_err(|e| TelemetryError::Dir(dir.into(), e))?;
        let appender =
            tracing_appender::rolling::daily(Path::new(dir), format!("{file_prefix}.log"));
        let (writer, thread) = BatchWriter::spawn(appender, "log-file");
        writers.push(thread);
        Some(JsonLayer::new(writer))
    };
    let registry = tracing_subscriber::registry().with(filter).with(file_layer);
    let installed = if format == "pretty" {
        registry
            .with(tracing_subscriber::fmt::layer().with_writer(stdout))
            .try_init()
    } else {
        registry.with(JsonLayer::new(stdout)).try_init()
    };
    installed.map_err(|_| TelemetryError::AlreadyInstalled)?;
    Ok(LogGuard { _writers: writers })
}

/// Formats an error with its whole cause chain: `outer: middle: root`.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

struct Pending {
    lines: Vec<u8>,
    dropped: u64,
    closed: bool,
}

struct Batch {
    pending: Mutex<Pending>,
    wake: Condvar,
}

impl Batch {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Appends whole lines to a shared batch that a [`WriterThread`] writes out.
#[derive(Clone)]
struct BatchWriter(Arc<Batch>);

impl BatchWriter {
    fn spawn(mut sink: impl Write + Send + 'static, name: &str) -> (Self, WriterThread) {
        let batch = Arc::new(Batch {
            pending: Mutex::new(Pending {
                lines: Vec::with_capacity(FLUSH_AT_BYTES * 2),
                dropped: 0,
                closed: false,
            }),
            wake: Condvar::new(),
        });
        let shared = batch.clone();
        let run = move || {
            // Swapped with the pending buffer on each round, so steady state allocates nothing.
            let mut out = Vec::with_capacity(FLUSH_AT_BYTES * 2);
            loop {
                let (dropped, closed) = {
                    let mut pending = shared.lock();
                    if !pending.closed && pending.lines.len() < FLUSH_AT_BYTES {
                        pending = shared
                            .wake
                            .wait_timeout(pending, FLUSH_INTERVAL)
                            .unwrap_or_else(PoisonError::into_inner)
                            .0;
                    }
                    std::mem::swap(&mut pending.lines, &mut out);
                    (std::mem::take(&mut pending.dropped), pending.closed)
                };
                if dropped > 0 {
                    out.extend_from_slice(
                        format!(
                            "{{\"level\":\"warn\",\"target\":\"platform::telemetry\",\"message\":\"log lines dropped: the output could not keep up\",\"dropped\":{dropped}}}\n"
                        )
                        .as_bytes(),
                    );
                }
                if !out.is_empty() {
                    // Lines that cannot be written have nowhere else to go.
                    let _ = sink.write_all(&out).and_then(|()| sink.flush());
                    out.clear();
                }
                if closed {
                    break;
                }
            }
        };
        let handle = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(run)
            .ok();
        let thread = WriterThread {
            batch: batch.clone(),
            handle,
        };
        (Self(batch), thread)
    }
}

impl Write for &BatchWriter {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut pending = self.0.lock();
        if pending.closed || pending.lines.len() + line.len() > MAX_PENDING_BYTES {
            pending.dropped += 1;
            return Ok(line.len());
        }
        let before = pending.lines.len();
        pending.lines.extend_from_slice(line);
        if before < FLUSH_AT_BYTES && pending.lines.len() >= FLUSH_AT_BYTES {
            self.0.wake.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchWriter {
    type Writer = &'a BatchWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

/// The thread writing one output; dropping it writes what is pending and stops the thread.
struct WriterThread {
    batch: Arc<Batch>,
    handle: Option<JoinHandle<()>>,
}

impl Drop for WriterThread {
    fn drop(&mut self) {
        self.batch.lock().closed = true;
        self.batch.wake.notify_one();
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
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
        let mut visitor = SpanVisitor(self);
        record(&mut visitor);
    }
}

struct SpanVisitor<'a>(&'a mut SpanFields);

impl SpanVisitor<'_> {
    fn field(&mut self, field: &Field, encode: impl FnOnce(&mut Vec<u8>)) {
        let start = self.0.values.len();
        encode(&mut self.0.values);
        self.0
            .fields
            .push((field.name(), start..self.0.values.len()));
    }
}

impl Visit for SpanVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.field(field, |out| encode_f64(out, value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, |out| encode_display(out, value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, |out| encode_display(out, value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, |out| encode_display(out, value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, |out| encode_str(out, value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.field(field, |out| encode_string(out, ErrorChain(value)));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, |out| encode_string(out, format_args!("{value:?}")));
    }
}

/// A layer writing one JSON object per event.
pub struct JsonLayer<W> {
    writer: W,
}

impl<W> JsonLayer<W> {
    pub fn new(writer: W) -> Self {
        Self { writer }
    }
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

    fn format<S>(&mut self, event: &Event<'_>, ctx: &Context<'_, S>)
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
        event.record(&mut EventVisitor(self));
        self.out.extend_from_slice(b",\"message\":");
        if self.message.is_empty() {
            self.out.extend_from_slice(b"\"\"");
        } else {
            self.out.extend_from_slice(&self.message);
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

struct EventVisitor<'a>(&'a mut Line);

impl EventVisitor<'_> {
    fn field(&mut self, field: &Field, encode: impl FnOnce(&mut Vec<u8>)) {
        if field.name() == "message" {
            encode(&mut self.0.message);
        } else if self.0.key(field.name()) {
            encode(&mut self.0.out);
        }
    }
}

impl Visit for EventVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.field(field, |out| encode_f64(out, value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, |out| encode_display(out, value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, |out| encode_display(out, value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, |out| encode_display(out, value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, |out| encode_str(out, value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.field(field, |out| encode_string(out, ErrorChain(value)));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, |out| encode_string(out, format_args!("{value:?}")));
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
        let write = |line: &mut Line| {
            line.format(event, &ctx);
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
    use serde_json::Value;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Captured {
        type Writer = Captured;
        fn make_writer(&'w self) -> Self::Writer {
            self.clone()
        }
    }

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
            let bytes = captured.0.lock().map(|b| b.clone()).unwrap_or_default();
            let line: Value = serde_json::from_slice(&bytes).expect("one JSON line");
            assert_eq!(line["request_id"], "r-2");
        }
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
        let bytes = captured.0.lock().map(|b| b.clone()).unwrap_or_default();
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

    #[test]
    fn pending_lines_are_written_when_the_guard_is_dropped() {
        let sink = Captured::default();
        let (writer, thread) = BatchWriter::spawn(sink.clone(), "log-test");
        (&writer).write_all(b"one\n").expect("buffered");
        (&writer).write_all(b"two\n").expect("buffered");
        drop(thread);
        let bytes = sink.0.lock().map(|b| b.clone()).unwrap_or_default();
        assert_eq!(bytes, b"one\ntwo\n");
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
        let bytes = captured.0.lock().map(|b| b.clone()).unwrap_or_default();
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
