//! A cache read inside a traced span is a client span of its own saying whether it hit. A test binary of
//! its own, since the span exporter is process-wide.

mod common;

use std::time::Duration;

use cache::Key;
use opentelemetry::trace::SpanKind;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

#[tokio::test]
async fn a_read_in_a_traced_span_is_a_cache_span_marked_hit_or_miss() {
    testkit::traces::capture();
    let (cache, _) = common::memory();
    let key = Key::user(uuid::Uuid::new_v4());
    let request = tracing::info_span!("request");
    let trace = {
        use opentelemetry::trace::TraceContextExt as _;
        request
            .context()
            .span()
            .span_context()
            .trace_id()
            .to_string()
    };
    async {
        assert_eq!(cache.get::<String>(&key).await, None);
        assert!(
            cache
                .set(&key, &"Ada".to_owned(), Duration::from_secs(60), &[])
                .await
        );
        assert_eq!(cache.get::<String>(&key).await.as_deref(), Some("Ada"));
    }
    .instrument(request.clone())
    .await;
    drop(request);
    let spans = testkit::traces::spans_of(&trace, Duration::from_secs(10), |spans| {
        spans.iter().filter(|s| s.name == "cache get").count() == 2
    })
    .await;
    let hits: Vec<Option<String>> = spans
        .iter()
        .filter(|s| s.name == "cache get")
        .inspect(|s| assert_eq!(s.span_kind, SpanKind::Client))
        .map(|s| testkit::traces::attribute(s, "cache.hit"))
        .collect();
    assert_eq!(hits, [Some("false".to_owned()), Some("true".to_owned())]);
}
