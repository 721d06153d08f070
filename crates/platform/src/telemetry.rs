//! Structured logs: one JSON object per line with timestamp, level, target, message, the fields of every
//! enclosing span (so `request_id` is on every line of a request) and the event's own fields.

use std::fmt;
use std::io::Write;
use std::path::Path;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber, span};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// Keeps the log writers flushing; hold it until the process exits.
#[must_use = "logs stop being written when the guard is dropped"]
pub struct LogGuard {
    _guards: Vec<WorkerGuard>,
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
    let (stdout, stdout_guard) = match console {
        Console::Stdout => tracing_appender::non_blocking(std::io::stdout()),
        Console::Stderr => tracing_appender::non_blocking(std::io::stderr()),
    };
    let mut guards = vec![stdout_guard];
    let file_layer = if dir.is_empty() {
        None
    } else {
        std::fs::create_dir_all(dir).map_err(|e| TelemetryError::Dir(dir.into(), e))?;
        let appender =
            tracing_appender::rolling::daily(Path::new(dir), format!("{file_prefix}.log"));
        let (writer, guard) = tracing_appender::non_blocking(appender);
        guards.push(guard);
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
    Ok(LogGuard { _guards: guards })
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

/// The span's fields, stored in its extensions when it is created.
struct SpanFields(Map<String, Value>);

/// A layer writing one JSON object per event.
pub struct JsonLayer<W> {
    writer: W,
}

impl<W> JsonLayer<W> {
    pub fn new(writer: W) -> Self {
        Self { writer }
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
            let mut visitor = JsonVisitor::default();
            attrs.record(&mut visitor);
            extensions.insert(SpanFields(visitor.fields));
        }
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(SpanFields(fields)) = extensions.get_mut::<SpanFields>() {
            let mut visitor = JsonVisitor::default();
            values.record(&mut visitor);
            fields.extend(visitor.fields);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let metadata = event.metadata();
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            Value::String(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
        );
        line.insert(
            "level".into(),
            Value::String(metadata.level().as_str().to_ascii_lowercase()),
        );
        line.insert("target".into(), Value::String(metadata.target().to_owned()));
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(SpanFields(fields)) = span.extensions().get::<SpanFields>() {
                    for (key, value) in fields {
                        line.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        let mut visitor = JsonVisitor::default();
        event.record(&mut visitor);
        let message = visitor
            .fields
            .remove("message")
            .unwrap_or(Value::String(String::new()));
        line.insert("message".into(), message);
        line.extend(visitor.fields);

        let mut bytes = serde_json::to_vec(&Value::Object(line)).unwrap_or_default();
        bytes.push(b'\n');
        // A log line that cannot be written has nowhere else to go.
        let _ = self.writer.make_writer().write_all(&bytes);
    }
}

#[derive(Default)]
struct JsonVisitor {
    fields: Map<String, Value>,
}

impl Visit for JsonVisitor {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.fields.insert(field.name().into(), Value::from(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.fields.insert(field.name().into(), Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.fields.insert(field.name().into(), Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.fields.insert(field.name().into(), Value::from(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.fields.insert(field.name().into(), Value::from(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.fields.insert(
            field.name().into(),
            Value::String(ErrorChain(value).to_string()),
        );
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.fields
            .insert(field.name().into(), Value::String(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

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
}
