//! Traces over OTLP (what Jaeger ≥ 1.35, Tempo and the OpenTelemetry Collector ingest), built on the
//! OpenTelemetry SDK and `tracing-opentelemetry`: every `tracing` span of LogiCore can become an OTel span.
//!
//! Finished spans go into a bounded queue (`ExportQueue`) that one thread drains in batches. When the
//! collector is slow or down the queue fills and further spans are dropped and counted
//! (`trace_spans_dropped_total`): a request never waits for the collector. The thread runs its own
//! single-threaded runtime, so the exporters' async clients (tonic for gRPC, reqwest for HTTP/protobuf) work
//! there, and it is stopped and drained when the [`TracesGuard`] is dropped at the end of the process.
//!
//! One process may run several services (`logicore all`); each keeps its own `service.name`. The service is
//! put into the OpenTelemetry context of the spans where work enters a service ([`enter`]), every span
//! below inherits it, and the export thread sends each service's spans with that service's resource.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{LazyLock, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use opentelemetry::trace::{SpanContext, TraceContextExt, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{
    Sampler, SdkTracerProvider, Span, SpanData, SpanExporter, SpanProcessor,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

use crate::config::TracingSettings;

use super::TelemetryError;

/// Which service a span belongs to, carried in the OpenTelemetry context from where work enters it.
#[derive(Debug, Clone, Copy)]
struct ServiceName(&'static str);

/// The span attribute the export thread groups spans by; removed before export.
pub const SERVICE_ATTRIBUTE: &str = "logicore.service";

/// The target of sqlx's event for each statement it ran (`summary`, `db.statement`, rows affected and
/// returned): an event of the query's span when the query is traced.
pub const SQL_STATEMENTS_TARGET: &str = "sqlx::query";

/// The target of spans made only to carry fields onto log lines (a request that is not traced): never
/// OpenTelemetry spans.
pub const LOG_ONLY_TARGET: &str = "logicore::log_only";

/// Targets whose spans are never exported: the exporters' own HTTP/2 and gRPC machinery, which would
/// otherwise trace its own exports, and log-only spans.
pub const UNTRACED_TARGETS: &[&str] = &[
    "h2",
    "hyper",
    "hyper_util",
    "tonic",
    "tower",
    "reqwest",
    LOG_ONLY_TARGET,
];

/// Whether the current span is a sampled OpenTelemetry span: only then are spans made below it (a query,
/// a cache read, an upstream attempt, a step), so work that is not traced pays for none.
pub fn in_traced_span() -> bool {
    if !enabled() {
        return false;
    }
    let current = tracing::Span::current();
    !current.is_none() && span_context(&current).is_some_and(|context| context.is_sampled())
}

struct Counters {
    dropped: Counter,
    exported: Counter,
    failed_exports: Counter,
}

static COUNTERS: LazyLock<Counters> = LazyLock::new(|| Counters {
    dropped: Counter::default(),
    exported: Counter::default(),
    failed_exports: Counter::default(),
});

/// Registers the process's span counters in a service's registry (every service of a process shows the
/// same counts: the export queue is the process's).
pub fn register_metrics(registry: &mut Registry) {
    let counters = &*COUNTERS;
    registry.register(
        "trace_spans_dropped",
        "Finished spans dropped because the export queue was full (the collector slow or down)",
        counters.dropped.clone(),
    );
    registry.register(
        "trace_spans_exported",
        "Spans handed to the OTLP collector",
        counters.exported.clone(),
    );
    registry.register(
        "trace_export_failures",
        "Batches of spans the collector did not accept (refused, unreachable or too slow)",
        counters.failed_exports.clone(),
    );
}

/// `cx` marked as the context of work entering `service`: spans started under it carry the service's own
/// `service.name`, also when several services share the process.
pub fn enter(cx: Context, service: &'static str) -> Context {
    cx.with_value(ServiceName(service))
}

/// The `traceparent` header value of a span context (W3C Trace Context, version 00).
pub fn traceparent(span: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        span.trace_id(),
        span.span_id(),
        span.trace_flags().to_u8()
    )
}

/// Whether spans are exported (a tracer provider is installed); when not, no span is made for tracing's
/// sake and trace headers pass through untouched.
static ON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn enabled() -> bool {
    ON.load(std::sync::atomic::Ordering::Relaxed)
}

/// Marks spans as exported from now on: done by the logging set-up, or by a test that installs its own
/// provider.
pub fn set_enabled(on: bool) {
    ON.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// The trace headers LogiCore reads and writes: W3C Trace Context and Baggage.
pub const HEADERS: [&str; 3] = ["traceparent", "tracestate", "baggage"];

static PROPAGATOR: LazyLock<opentelemetry::propagation::TextMapCompositePropagator> =
    LazyLock::new(|| {
        opentelemetry::propagation::TextMapCompositePropagator::new(vec![
            Box::new(opentelemetry_sdk::propagation::TraceContextPropagator::new()),
            Box::new(opentelemetry_sdk::propagation::BaggagePropagator::new()),
        ])
    });

/// Trace headers as a caller sent them (or as they are to be sent): one value per name of [`HEADERS`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Carried(pub [Option<String>; 3]);

impl Carried {
    /// The trace headers among `headers`, the first value of each; a value that is not text is ignored.
    pub fn from_pairs<'h>(headers: impl IntoIterator<Item = (&'h str, &'h [u8])>) -> Self {
        let mut carried = Self::default();
        for (name, value) in headers {
            if let Some(index) = HEADERS.iter().position(|h| name.eq_ignore_ascii_case(h))
                && carried.0[index].is_none()
                && let Ok(value) = std::str::from_utf8(value)
            {
                carried.0[index] = Some(value.to_owned());
            }
        }
        carried
    }

    /// Each header that has a value.
    pub fn headers(&self) -> impl Iterator<Item = (&'static str, &str)> {
        HEADERS
            .iter()
            .zip(&self.0)
            .filter_map(|(name, value)| Some((*name, value.as_deref()?)))
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(Option::is_none)
    }

    /// The context these headers continue (an empty one when they name none or are malformed).
    pub fn extract(&self) -> Context {
        use opentelemetry::propagation::TextMapPropagator as _;
        PROPAGATOR.extract(self)
    }

    /// The headers that continue `cx`.
    pub fn inject(cx: &Context) -> Self {
        use opentelemetry::propagation::TextMapPropagator as _;
        let mut carried = Self::default();
        PROPAGATOR.inject_context(cx, &mut carried);
        carried
    }

    /// These headers with `traceparent` replaced.
    pub fn with_traceparent(mut self, traceparent: String) -> Self {
        self.0[0] = Some(traceparent);
        self
    }
}

impl opentelemetry::propagation::Extractor for Carried {
    fn get(&self, key: &str) -> Option<&str> {
        let index = HEADERS.iter().position(|h| key.eq_ignore_ascii_case(h))?;
        self.0[index].as_deref()
    }

    fn keys(&self) -> Vec<&str> {
        self.headers().map(|(name, _)| name).collect()
    }
}

impl opentelemetry::propagation::Injector for Carried {
    fn set(&mut self, key: &str, value: String) {
        if let Some(index) = HEADERS.iter().position(|h| key.eq_ignore_ascii_case(h)) {
            self.0[index] = Some(value);
        }
    }
}

/// What a process's tracing needs: the settings and who the process is.
#[derive(Debug, Clone)]
pub struct Identity<'a> {
    /// The name used when no service claimed a span (start-up, `logicore migrate`).
    pub process: &'static str,
    pub version: &'a str,
    pub environment: &'a str,
}

/// Keeps traces exported; dropping it exports what is queued (bounded by the export timeout) and stops
/// the export thread.
#[must_use = "traces stop being exported when the guard is dropped"]
pub struct TracesGuard {
    provider: SdkTracerProvider,
}

impl Drop for TracesGuard {
    fn drop(&mut self) {
        // Best effort at exit: a collector that is down must not hold the process, and the export
        // timeout bounds how long this takes.
        let _ = self.provider.shutdown();
    }
}

/// The tracer provider the settings describe, or `None` when tracing is off (no endpoint).
pub(super) fn provider(
    settings: &TracingSettings,
    identity: &Identity<'_>,
) -> Result<Option<SdkTracerProvider>, TelemetryError> {
    if settings.otlp_endpoint.is_empty() {
        return Ok(None);
    }
    let resources = Resources::new(settings, identity)?;
    let factory = ExporterFactory::new(settings)?;
    let queue = ExportQueue::spawn(settings, resources, factory)?;
    Ok(Some(
        SdkTracerProvider::builder()
            .with_span_processor(ServiceStamp)
            .with_span_processor(queue)
            .with_sampler(sampler(settings))
            .build(),
    ))
}

/// A provider exporting to `exporter` as spans end, for tests (the SDK's in-memory exporter), sampled as
/// the settings say.
pub fn test_provider<E: SpanExporter + 'static>(
    exporter: E,
    settings: &TracingSettings,
) -> SdkTracerProvider {
    SdkTracerProvider::builder()
        .with_span_processor(ServiceStamp)
        .with_simple_exporter(exporter)
        .with_sampler(sampler(settings))
        .build()
}

/// The tracer of a provider, for the `tracing` layer.
pub fn tracer(provider: &SdkTracerProvider) -> opentelemetry_sdk::trace::Tracer {
    provider.tracer("logicore")
}

impl TracesGuard {
    pub(super) fn new(provider: SdkTracerProvider) -> Self {
        Self { provider }
    }
}

/// `OTEL_TRACES_SAMPLER`'s names; validation keeps anything else out.
pub const SAMPLERS: &[&str] = &[
    "parentbased_traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "traceidratio",
    "always_on",
    "always_off",
];

/// The SDK's sampler: a span follows its parent, and a span without one is sampled. Where work enters
/// LogiCore ([`Decision::at_entry`]) the configured sampler has already decided, and a request it sampled
/// out makes no span at all (not even a non-recording one: that is what keeps 1 % sampling cheap).
/// Spans are made only under such an entry span, or under an event's recorded parent.
fn sampler(settings: &TracingSettings) -> Sampler {
    store_entry_sampler(settings);
    ENTRY_SAMPLER_SET.store(true, Ordering::Release);
    Sampler::ParentBased(Box::new(Sampler::AlwaysOn))
}

/// Puts a reloaded `tracing.sampler` and `tracing.sampler_arg` in force for the work entering from now
/// on. Does nothing when the process does not trace (no collector at start).
pub fn reconfigure_sampling(settings: &TracingSettings) {
    if ENTRY_SAMPLER_SET.load(Ordering::Acquire) {
        store_entry_sampler(settings);
    }
}

fn store_entry_sampler(settings: &TracingSettings) {
    let ratio = match settings.sampler.as_str() {
        "always_on" | "parentbased_always_on" => 1.0,
        "always_off" | "parentbased_always_off" => 0.0,
        _ => settings.sampler_arg,
    };
    ENTRY_PARENT_BASED.store(
        settings.sampler.starts_with("parentbased_"),
        Ordering::Relaxed,
    );
    ENTRY_RATIO_BITS.store(ratio.to_bits(), Ordering::Relaxed);
}

/// The configured sampler, applied where work enters LogiCore.
#[derive(Debug, Clone, Copy)]
struct EntrySampler {
    /// A caller's decision is followed (`parentbased_*`).
    parent_based: bool,
    /// The share of the traces decided here that is sampled.
    ratio: f64,
}

/// The entry sampler, in atomics so a reload can change it while every request reads it: whether one is
/// configured (tracing on), and its two values.
static ENTRY_SAMPLER_SET: AtomicBool = AtomicBool::new(false);
static ENTRY_PARENT_BASED: AtomicBool = AtomicBool::new(false);
static ENTRY_RATIO_BITS: AtomicU64 = AtomicU64::new(0);

/// Whether the work a caller's context (`parent`, possibly invalid: none) asks for is traced.
pub fn sampled_at_entry(parent: &SpanContext) -> bool {
    if !ENTRY_SAMPLER_SET.load(Ordering::Acquire) {
        return false;
    }
    EntrySampler {
        parent_based: ENTRY_PARENT_BASED.load(Ordering::Relaxed),
        ratio: f64::from_bits(ENTRY_RATIO_BITS.load(Ordering::Relaxed)),
    }
    .samples(parent, rand::random::<f64>())
}

impl EntrySampler {
    /// The decision for work with the caller's context `parent`, given a uniform draw in [0, 1).
    fn samples(&self, parent: &SpanContext, draw: f64) -> bool {
        if self.parent_based && parent.is_valid() {
            return parent.is_sampled();
        }
        draw < self.ratio
    }
}

/// A new trace context that says "not sampled", for work that is not traced but whose calls must carry
/// the decision on (so nothing downstream starts a trace of its own for it).
pub fn unsampled_traceparent(trace: Option<opentelemetry::trace::TraceId>) -> String {
    let trace = trace
        .filter(|trace| *trace != opentelemetry::trace::TraceId::INVALID)
        .unwrap_or_else(|| opentelemetry::trace::TraceId::from_bytes(rand::random()));
    let span = opentelemetry::trace::SpanId::from_bytes(rand::random());
    format!("00-{trace}-{span}-00")
}

/// `OTEL_RESOURCE_ATTRIBUTES` syntax: `key=value` pairs separated by commas, values percent-encoded.
pub fn parse_resource_attributes(text: &str) -> Result<Vec<(String, String)>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("{pair:?} is not key=value"))?;
            let key = key.trim();
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_graphic()) {
                return Err(format!("{key:?} is not a printable key"));
            }
            let value: String = form_urlencoded::parse(format!("v={}", value.trim()).as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            Ok((key.to_owned(), value))
        })
        .collect()
}

/// The resource of each service of the process: `service.name` (unless `OTEL_SERVICE_NAME` names one
/// for all), `service.version`, `service.instance.id`, `deployment.environment` and the operator's own.
struct Resources {
    fixed_name: Option<String>,
    common: Vec<KeyValue>,
    by_service: HashMap<&'static str, Resource>,
    process: &'static str,
}

impl Resources {
    fn new(settings: &TracingSettings, identity: &Identity<'_>) -> Result<Self, TelemetryError> {
        let extra = parse_resource_attributes(&settings.resource_attributes)
            .map_err(TelemetryError::Traces)?;
        let instance = uuid::Uuid::new_v4().to_string();
        let mut common = vec![
            KeyValue::new("service.version", identity.version.to_owned()),
            KeyValue::new("service.instance.id", instance),
            KeyValue::new("deployment.environment", identity.environment.to_owned()),
            KeyValue::new(
                "deployment.environment.name",
                identity.environment.to_owned(),
            ),
        ];
        common.extend(
            extra
                .into_iter()
                .map(|(key, value)| KeyValue::new(key, value)),
        );
        Ok(Self {
            fixed_name: (!settings.service_name.is_empty()).then(|| settings.service_name.clone()),
            common,
            by_service: HashMap::new(),
            process: identity.process,
        })
    }

    fn of(&mut self, service: Option<&'static str>) -> Resource {
        let service = service.unwrap_or(self.process);
        let (fixed, common) = (&self.fixed_name, &self.common);
        self.by_service
            .entry(service)
            .or_insert_with(|| {
                let name = fixed.clone().unwrap_or_else(|| service.to_owned());
                Resource::builder_empty()
                    .with_attributes(common.iter().cloned())
                    .with_service_name(name)
                    .build()
            })
            .clone()
    }
}

/// Builds one OTLP exporter per service (each carries its resource).
struct ExporterFactory {
    endpoint: String,
    grpc: bool,
    timeout: Duration,
}

impl ExporterFactory {
    fn new(settings: &TracingSettings) -> Result<Self, TelemetryError> {
        let grpc = settings.protocol == "grpc";
        let mut endpoint = settings.otlp_endpoint.trim_end_matches('/').to_owned();
        // OTEL_EXPORTER_OTLP_ENDPOINT names the collector's base URL; HTTP/protobuf posts traces to
        // `/v1/traces` below it.
        if !grpc && !endpoint.ends_with("/v1/traces") {
            endpoint.push_str("/v1/traces");
        }
        Ok(Self {
            endpoint,
            grpc,
            timeout: Duration::from_millis(settings.export_timeout_ms),
        })
    }

    fn build(&self, resource: &Resource) -> Result<opentelemetry_otlp::SpanExporter, String> {
        let built = if self.grpc {
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(self.endpoint.clone())
                .with_timeout(self.timeout)
                .build()
        } else {
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(self.endpoint.clone())
                .with_timeout(self.timeout)
                .with_headers(HashMap::new())
                .build()
        };
        let mut exporter = built.map_err(|e| e.to_string())?;
        exporter.set_resource(resource);
        Ok(exporter)
    }
}

enum Message {
    Span(Box<SpanData>),
    Flush(SyncSender<()>),
}

/// The span processor: stamps each span with its service, and queues finished spans for the export
/// thread without ever waiting.
#[derive(Debug)]
struct ExportQueue {
    sender: Mutex<Option<SyncSender<Message>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    timeout: Duration,
}

impl ExportQueue {
    fn spawn(
        settings: &TracingSettings,
        resources: Resources,
        factory: ExporterFactory,
    ) -> Result<Self, TelemetryError> {
        let (sender, receiver) = mpsc::sync_channel(settings.queue_size);
        let batch = Batching {
            max_spans: settings.max_batch_size,
            delay: Duration::from_millis(settings.batch_delay_ms),
            timeout: Duration::from_millis(settings.export_timeout_ms),
        };
        let thread = std::thread::Builder::new()
            .name("trace-export".into())
            .spawn(move || export_loop(receiver, batch, resources, factory))
            .map_err(|e| TelemetryError::Traces(format!("cannot start the export thread: {e}")))?;
        Ok(Self {
            sender: Mutex::new(Some(sender)),
            thread: Mutex::new(Some(thread)),
            timeout: Duration::from_millis(settings.export_timeout_ms),
        })
    }

    fn send(&self, message: Message) -> bool {
        let Ok(guard) = self.sender.lock() else {
            return false;
        };
        let Some(sender) = guard.as_ref() else {
            return false;
        };
        match sender.try_send(message) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }
}

/// Stamps each span with the service of its context ([`enter`]), so spans can be told apart by service
/// after they end.
#[derive(Debug)]
pub struct ServiceStamp;

impl SpanProcessor for ServiceStamp {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        if let Some(ServiceName(service)) = cx.get::<ServiceName>() {
            opentelemetry::trace::Span::set_attribute(
                span,
                KeyValue::new(SERVICE_ATTRIBUTE, *service),
            );
        }
    }

    fn on_end(&self, _span: SpanData) {}

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

impl SpanProcessor for ExportQueue {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if !self.send(Message::Span(Box::new(span))) {
            COUNTERS.dropped.inc();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        let (done, wait) = mpsc::sync_channel(1);
        let Ok(guard) = self.sender.lock() else {
            return Err(OTelSdkError::InternalFailure(
                "export queue poisoned".into(),
            ));
        };
        let Some(sender) = guard.as_ref() else {
            return Err(OTelSdkError::AlreadyShutdown);
        };
        // A flush waits for room rather than being dropped: it is asked for by tests and at shutdown.
        sender
            .send(Message::Flush(done))
            .map_err(|_| OTelSdkError::AlreadyShutdown)?;
        drop(guard);
        wait.recv_timeout(self.timeout.saturating_mul(2))
            .map_err(|_| OTelSdkError::Timeout(self.timeout))
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        // Closing the channel makes the thread export what is queued and return.
        let sender = self.sender.lock().ok().and_then(|mut sender| sender.take());
        drop(sender);
        let thread = self.thread.lock().ok().and_then(|mut thread| thread.take());
        if let Some(thread) = thread {
            thread
                .join()
                .map_err(|_| OTelSdkError::InternalFailure("the export thread panicked".into()))?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
struct Batching {
    max_spans: usize,
    delay: Duration,
    timeout: Duration,
}

fn export_loop(
    receiver: Receiver<Message>,
    batching: Batching,
    mut resources: Resources,
    factory: ExporterFactory,
) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let mut exporters: HashMap<&'static str, opentelemetry_otlp::SpanExporter> = HashMap::new();
    let mut batch: Vec<SpanData> = Vec::with_capacity(batching.max_spans);
    let mut deadline = Instant::now() + batching.delay;
    loop {
        let wait = deadline.saturating_duration_since(Instant::now());
        let (flush, closed) = match receiver.recv_timeout(wait) {
            Ok(Message::Span(span)) => {
                batch.push(*span);
                (None, false)
            }
            Ok(Message::Flush(done)) => (Some(done), false),
            Err(RecvTimeoutError::Timeout) => (None, false),
            Err(RecvTimeoutError::Disconnected) => (None, true),
        };
        let due = Instant::now() >= deadline;
        if batch.len() >= batching.max_spans || due || flush.is_some() || closed {
            if closed {
                batch.extend(receiver.try_iter().filter_map(|message| match message {
                    Message::Span(span) => Some(*span),
                    Message::Flush(_) => None,
                }));
            }
            let spans = std::mem::take(&mut batch);
            // Each service's spans get the export timeout; the last export, at shutdown, gets it once
            // for all of them, so a collector that is down delays the exit by one timeout at most.
            let exported = export(
                spans,
                &mut exporters,
                &mut resources,
                &factory,
                batching.timeout,
            );
            if closed {
                let _ = runtime
                    .block_on(async { tokio::time::timeout(batching.timeout, exported).await });
            } else {
                runtime.block_on(exported);
            }
            deadline = Instant::now() + batching.delay;
        }
        if let Some(done) = flush {
            let _ = done.send(());
        }
        if closed {
            for exporter in exporters.values() {
                let _ = exporter.shutdown();
            }
            return;
        }
    }
}

/// Sends a batch, each service's spans with its resource.
async fn export(
    spans: Vec<SpanData>,
    exporters: &mut HashMap<&'static str, opentelemetry_otlp::SpanExporter>,
    resources: &mut Resources,
    factory: &ExporterFactory,
    timeout: Duration,
) {
    if spans.is_empty() {
        return;
    }
    let mut by_service: HashMap<Option<&'static str>, Vec<SpanData>> = HashMap::new();
    for mut span in spans {
        let service = take_service(&mut span);
        by_service.entry(service).or_default().push(span);
    }
    for (service, spans) in by_service {
        let count = spans.len() as u64;
        let key = service.unwrap_or(resources.process);
        if !exporters.contains_key(key) {
            match factory.build(&resources.of(service)) {
                Ok(exporter) => {
                    exporters.insert(key, exporter);
                }
                Err(error) => {
                    COUNTERS.failed_exports.inc();
                    tracing::warn!(%error, "cannot build the OTLP exporter");
                    continue;
                }
            }
        }
        let Some(exporter) = exporters.get(key) else {
            continue;
        };
        match tokio::time::timeout(timeout, exporter.export(spans)).await {
            Ok(Ok(())) => {
                COUNTERS.exported.inc_by(count);
            }
            Ok(Err(error)) => {
                COUNTERS.failed_exports.inc();
                tracing::debug!(%error, spans = count, "the OTLP collector refused a batch");
            }
            Err(_) => {
                COUNTERS.failed_exports.inc();
                tracing::debug!(spans = count, "the OTLP collector did not answer in time");
            }
        }
    }
}

/// The `traceparent` of the current span, when spans are exported and there is one: what an event
/// written now carries, so its consumers continue the trace.
pub fn current_traceparent() -> Option<String> {
    if !in_traced_span() {
        return None;
    }
    span_context(&tracing::Span::current()).map(|span| traceparent(&span))
}

/// Runs `work` in a span of its own, `name`, under the current one: the original platform's `withSpan`,
/// for a business step worth seeing in a trace (the saga's `reserve`, `confirm`, `reject`, `release`).
/// Outside a traced span, or with tracing off, `work` just runs.
pub async fn with_span<F: Future>(name: &'static str, work: F) -> F::Output {
    if !in_traced_span() {
        return work.await;
    }
    let span = tracing::info_span!("step", otel.name = name, step = name);
    tracing::Instrument::instrument(work, span).await
}

/// The context a `traceparent` (of an event, say) continues; empty when there is none or it is malformed.
pub fn continued(traceparent: Option<&str>) -> Context {
    Carried([traceparent.map(str::to_owned), None, None]).extract()
}

/// The service a span was stamped with, removing the stamp.
fn take_service(span: &mut SpanData) -> Option<&'static str> {
    let index = span
        .attributes
        .iter()
        .position(|kv| kv.key.as_str() == SERVICE_ATTRIBUTE)?;
    let stamp = span.attributes.swap_remove(index);
    match stamp.value {
        opentelemetry::Value::String(name) => intern(name.as_str()),
        _ => None,
    }
}

/// A service name as a `&'static str` ([`enter`] takes one), for names known only at run time (a
/// consumer group's service, a span's stamp): each distinct name is kept once; `None` past a few dozen.
pub fn intern(name: &str) -> Option<&'static str> {
    static NAMES: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let mut names = NAMES.lock().ok()?;
    if let Some(known) = names.iter().find(|known| **known == name) {
        return Some(known);
    }
    if names.len() >= 64 {
        return None;
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.push(leaked);
    Some(leaked)
}

/// The trace id of `span` when spans are exported and its trace is sampled: a latency's exemplar.
pub fn sampled_trace_id(span: &tracing::Span) -> Option<String> {
    if !enabled() || span.is_none() {
        return None;
    }
    span_context(span)
        .filter(SpanContext::is_sampled)
        .map(|context| context.trace_id().to_string())
}

/// The span context of a `tracing` span, when tracing is on and the span has one.
pub fn span_context(span: &tracing::Span) -> Option<SpanContext> {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let cx = span.context();
    let span_context = cx.span().span_context().clone();
    span_context.is_valid().then_some(span_context)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_attributes_are_key_value_pairs_with_percent_encoded_values() {
        assert_eq!(
            parse_resource_attributes("team=logistics, region=eu%2Dwest ,,"),
            Ok(vec![
                ("team".to_owned(), "logistics".to_owned()),
                ("region".to_owned(), "eu-west".to_owned()),
            ])
        );
        assert!(parse_resource_attributes("team").is_err());
        assert!(parse_resource_attributes("=x").is_err());
    }

    #[test]
    fn the_entry_sampler_follows_a_callers_decision_only_when_parent_based() {
        let caller = |flags| {
            SpanContext::new(
                opentelemetry::trace::TraceId::from_bytes([1; 16]),
                opentelemetry::trace::SpanId::from_bytes([2; 8]),
                flags,
                true,
                Default::default(),
            )
        };
        let sampled = caller(opentelemetry::trace::TraceFlags::SAMPLED);
        let unsampled = caller(opentelemetry::trace::TraceFlags::default());
        let none = SpanContext::empty_context();
        let parent_based = EntrySampler {
            parent_based: true,
            ratio: 0.01,
        };
        assert!(parent_based.samples(&sampled, 0.99));
        assert!(!parent_based.samples(&unsampled, 0.0));
        assert!(parent_based.samples(&none, 0.005));
        assert!(!parent_based.samples(&none, 0.02));
        let ratio = EntrySampler {
            parent_based: false,
            ratio: 0.5,
        };
        assert!(ratio.samples(&unsampled, 0.1));
        assert!(!ratio.samples(&sampled, 0.9));
        let never = EntrySampler {
            parent_based: false,
            ratio: 0.0,
        };
        assert!(!never.samples(&none, 0.0));
    }

    #[test]
    fn an_unsampled_traceparent_keeps_the_callers_trace_and_says_not_sampled() {
        let trace = opentelemetry::trace::TraceId::from_bytes([7; 16]);
        let kept = unsampled_traceparent(Some(trace));
        assert!(kept.starts_with(&format!("00-{trace}-")), "{kept}");
        assert!(kept.ends_with("-00"), "{kept}");
        let fresh = unsampled_traceparent(None);
        let parts: Vec<&str> = fresh.split('-').collect();
        assert_eq!(parts.len(), 4);
        assert_eq!((parts[1].len(), parts[2].len(), parts[3]), (32, 16, "00"));
        let continued = continued(Some(&fresh));
        assert!(continued.span().span_context().is_valid(), "{fresh}");
    }

    #[test]
    fn a_traceparent_has_version_trace_span_and_flags() {
        let span = SpanContext::new(
            opentelemetry::trace::TraceId::from_hex("0af7651916cd43dd8448eb211c80319c")
                .unwrap_or(opentelemetry::trace::TraceId::INVALID),
            opentelemetry::trace::SpanId::from_hex("b7ad6b7169203331")
                .unwrap_or(opentelemetry::trace::SpanId::INVALID),
            opentelemetry::trace::TraceFlags::SAMPLED,
            true,
            Default::default(),
        );
        assert_eq!(
            traceparent(&span),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        );
    }
}
