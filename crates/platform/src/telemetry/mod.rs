//! Structured logs: one JSON object per line with timestamp, level, target, message, the event's own
//! fields and the fields of every enclosing span (so `request_id` is on every line of a request).
//!
//! This file installs the global subscriber and holds the public API; the line format is the
//! [`JsonLayer`] of `json`, and the batched output behind it is `writer`'s thread, so formatting and
//! writing can each be read (and tested) without the other.

mod json;
pub mod traces;
mod writer;

pub use json::{DispatchSlot, JsonLayer};
pub use traces::{Identity, TracesGuard};

use std::fmt;
use std::path::Path;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

use crate::config::TracingSettings;

use writer::{BatchWriter, WriterThread};

/// Keeps the log writers flushing and traces exporting; hold it until the process exits. Dropping it
/// exports the queued spans, then writes what is pending.
#[must_use = "logs stop being written when the guard is dropped"]
pub struct LogGuard {
    _traces: Option<TracesGuard>,
    _writers: Vec<WriterThread>,
    level: LevelHandle,
}

/// The log filter in force, swappable while the process runs (a configuration reload).
type LevelHandle = tracing_subscriber::reload::Handle<EnvFilter, Registry>;

impl LogGuard {
    /// What changes the log level later, while the guard is held.
    pub fn level_setter(&self) -> LevelSetter {
        LevelSetter(self.level.clone())
    }
}

/// Replaces the log level for every log line from then on (a reloaded `log.level`).
#[derive(Clone)]
pub struct LevelSetter(LevelHandle);

impl LevelSetter {
    /// `level` is an `EnvFilter` directive, as `log.level`.
    pub fn set(&self, level: &str) -> Result<(), TelemetryError> {
        let filter = EnvFilter::try_new(level)
            .map_err(|e| TelemetryError::Level(level.into(), e.to_string()))?;
        self.0
            .reload(filter)
            .map_err(|e| TelemetryError::Level(level.into(), e.to_string()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid log level {0:?}: {1}")]
    Level(String, String),
    #[error("cannot create log directory {0}: {1}")]
    Dir(String, std::io::Error),
    #[error("a global logger is already installed")]
    AlreadyInstalled,
    #[error("cannot export traces: {0}")]
    Traces(String),
}

/// Where console logs go: servers log to stdout; commands whose stdout is their result log to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Console {
    Stdout,
    Stderr,
}

/// Where logs go and what they look like.
#[derive(Debug, Clone, Copy)]
pub struct LogOptions<'a> {
    /// An `EnvFilter` directive.
    pub level: &'a str,
    /// `json` or `pretty`.
    pub format: &'a str,
    /// When not empty, a daily rolling file there as well.
    pub dir: &'a str,
    pub file_prefix: &'a str,
    pub console: Console,
}

/// Installs the global subscriber: JSON (or human-readable) lines on the console and, when `dir` is not
/// empty, a daily rolling file there as well; and, when `tracing.otlp_endpoint` is set, the export of
/// spans over OTLP, with every log line inside a span carrying its `trace_id` and `span_id`.
pub fn init(
    logs: LogOptions<'_>,
    tracing: &TracingSettings,
    identity: &Identity<'_>,
) -> Result<LogGuard, TelemetryError> {
    let LogOptions {
        level,
        format,
        dir,
        file_prefix,
        console,
    } = logs;
    let filter = EnvFilter::try_new(level)
        .map_err(|e| TelemetryError::Level(level.into(), e.to_string()))?;
    let (filter, level) = tracing_subscriber::reload::Layer::new(filter);
    let (stdout, stdout_thread) = match console {
        Console::Stdout => BatchWriter::spawn(std::io::stdout(), "log-stdout"),
        Console::Stderr => BatchWriter::spawn(std::io::stderr(), "log-stderr"),
    };
    let mut writers = vec![stdout_thread];
    let file_writer = if dir.is_empty() {
        None
    } else {
        std::fs::create_dir_all(dir).map_err(|e| TelemetryError::Dir(dir.into(), e))?;
        let appender =
            tracing_appender::rolling::daily(Path::new(dir), format!("{file_prefix}.log"));
        let (writer, thread) = BatchWriter::spawn(appender, "log-file");
        writers.push(thread);
        Some(writer)
    };
    let Some(provider) = traces::provider(tracing, identity)? else {
        // Without traces the filter is global: a span or event below the level costs one check.
        let registry = tracing_subscriber::registry()
            .with(filter)
            .with(file_writer.map(JsonLayer::new));
        let installed = if format == "pretty" {
            registry
                .with(tracing_subscriber::fmt::layer().with_writer(stdout))
                .try_init()
        } else {
            registry.with(JsonLayer::new(stdout)).try_init()
        };
        installed.map_err(|_| TelemetryError::AlreadyInstalled)?;
        return Ok(LogGuard {
            _traces: None,
            _writers: writers,
            level,
        });
    };
    // With traces, the log level filters the log lines only: spans are traced at `info` whatever the
    // log level, except the exporters' own machinery.
    // sqlx reports each statement (its text, with `$n` for every value, and the rows it touched) as a
    // `trace` event when it completes: inside a traced query's span it becomes that span's event, so the
    // statement is in the trace without being a log line.
    let traced = Targets::new()
        .with_default(tracing::Level::INFO)
        .with_target(traces::SQL_STATEMENTS_TARGET, LevelFilter::TRACE)
        .with_targets(
            traces::UNTRACED_TARGETS
                .iter()
                .map(|target| (*target, LevelFilter::OFF)),
        );
    let slot = DispatchSlot::default();
    let mut logs: Vec<Box<dyn Layer<Registry> + Send + Sync>> = Vec::new();
    if let Some(writer) = file_writer {
        logs.push(Box::new(
            JsonLayer::new(writer).with_trace_ids(slot.clone()),
        ));
    }
    if format == "pretty" {
        logs.push(Box::new(
            tracing_subscriber::fmt::layer().with_writer(stdout),
        ));
    } else {
        logs.push(Box::new(
            JsonLayer::new(stdout).with_trace_ids(slot.clone()),
        ));
    }
    let otel = tracing_opentelemetry::layer()
        .with_tracer(traces::tracer(&provider))
        .with_filter(traced);
    let dispatch = tracing::Dispatch::new(
        tracing_subscriber::registry()
            .with(logs.with_filter(filter))
            .with(otel),
    );
    let _ = slot.set(dispatch.downgrade());
    dispatch
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    traces::set_enabled(true);
    Ok(LogGuard {
        _traces: Some(TracesGuard::new(provider)),
        _writers: writers,
        level,
    })
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

/// What the tests of `json` and `writer` both need: an output kept in memory to read back.
#[cfg(test)]
mod captured {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    /// An in-memory output: a sink for a writer thread, and a writer for a layer.
    #[derive(Clone, Default)]
    pub(super) struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Captured {
        /// Everything written so far.
        pub(super) fn bytes(&self) -> Vec<u8> {
            self.0.lock().map(|b| b.clone()).unwrap_or_default()
        }
    }

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
}
