//! Spans captured in memory: the process's `tracing` spans exported through the OpenTelemetry SDK's
//! in-memory exporter, sampled as the settings say, for tests that assert on traces.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use opentelemetry_sdk::trace::{InMemorySpanExporter, SpanData};
use platform::config::TracingSettings;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

static CAPTURED: OnceLock<InMemorySpanExporter> = OnceLock::new();

/// Installs (once per test binary) the global subscriber exporting every span to memory, and returns the
/// exporter. Spans of every test of the binary end up in it: a test picks its own by trace id.
pub fn capture() -> &'static InMemorySpanExporter {
    CAPTURED.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let settings = TracingSettings {
            sampler: "parentbased_always_on".into(),
            ..crate::settings(&[]).tracing
        };
        let provider = platform::telemetry::traces::test_provider(exporter.clone(), &settings);
        let layer = tracing_opentelemetry::layer()
            .with_tracer(platform::telemetry::traces::tracer(&provider));
        // The provider lives as long as the test binary: its spans are read, never flushed at exit.
        std::mem::forget(provider);
        let installed = tracing_subscriber::registry().with(layer).try_init();
        assert!(installed.is_ok(), "another global subscriber was installed");
        platform::telemetry::traces::set_enabled(true);
        exporter
    })
}

/// The finished spans of the trace `trace_id` (32 hex digits), polled until `complete` says they are all
/// there or `deadline` passes (then the test fails, showing what arrived).
pub async fn spans_of(
    trace_id: &str,
    deadline: Duration,
    complete: impl Fn(&[SpanData]) -> bool,
) -> Vec<SpanData> {
    let exporter = capture();
    let until = Instant::now() + deadline;
    loop {
        let spans: Vec<SpanData> = exporter
            .get_finished_spans()
            .unwrap_or_default()
            .into_iter()
            .filter(|span| span.span_context.trace_id().to_string() == trace_id)
            .collect();
        if complete(&spans) {
            return spans;
        }
        if Instant::now() >= until {
            let names: Vec<&str> = spans.iter().map(|span| span.name.as_ref()).collect();
            panic!("the trace {trace_id} is incomplete after {deadline:?}: {names:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of a span's attribute, as text.
pub fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}
