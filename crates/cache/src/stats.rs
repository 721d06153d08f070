//! Hit/miss/set/delete/error counters, readable in-process and exported to Prometheus.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// Counters shared by every clone of a `Cache`. `Counter` is an `Arc` inside, so the registry and the
/// cache see the same numbers.
#[derive(Clone, Default)]
pub(crate) struct Stats {
    pub hits: Counter,
    pub misses: Counter,
    pub sets: Counter,
    pub deletes: Counter,
    pub errors: Counter,
    /// Hits answered by the near cache in front of Redis (also counted in `hits`).
    pub near_hits: Counter,
}

/// A point-in-time copy of the counters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StatsSnapshot {
    pub hits: u64,
    pub misses: u64,
    pub sets: u64,
    pub deletes: u64,
    pub errors: u64,
    pub near_hits: u64,
}

impl StatsSnapshot {
    /// hits / (hits + misses); 0 before the first read.
    pub fn hit_ratio(&self) -> f64 {
        let reads = self.hits + self.misses;
        if reads == 0 {
            0.0
        } else {
            self.hits as f64 / reads as f64
        }
    }
}

impl Stats {
    /// Registers `cache_hits_total`, `cache_misses_total`, `cache_sets_total`, `cache_deletes_total`,
    /// `cache_errors_total`, `cache_near_hits_total` and the `cache_hit_ratio` gauge (computed at scrape time).
    pub fn register(registry: &mut Registry) -> Self {
        let stats = Self::default();
        let sub = registry.sub_registry_with_prefix("cache");
        sub.register("hits", "Reads answered from the cache", stats.hits.clone());
        sub.register(
            "misses",
            "Reads the cache could not answer",
            stats.misses.clone(),
        );
        sub.register("sets", "Values written to the cache", stats.sets.clone());
        sub.register(
            "deletes",
            "Keys invalidated or deleted",
            stats.deletes.clone(),
        );
        sub.register(
            "errors",
            "Cache operations that failed (the request went on without the cache)",
            stats.errors.clone(),
        );
        sub.register(
            "near_hits",
            "Hits answered by the in-process copy in front of Redis, without a round trip",
            stats.near_hits.clone(),
        );
        sub.register_collector(Box::new(HitRatio(stats.clone())));
        stats
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            hits: self.hits.get(),
            misses: self.misses.get(),
            sets: self.sets.get(),
            deletes: self.deletes.get(),
            errors: self.errors.get(),
            near_hits: self.near_hits.get(),
        }
    }
}

impl std::fmt::Debug for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.snapshot().fmt(f)
    }
}

#[derive(Debug)]
struct HitRatio(Stats);

impl Collector for HitRatio {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gauge = ConstGauge::new(self.0.snapshot().hit_ratio());
        gauge.encode(encoder.encode_descriptor(
            "hit_ratio",
            "hits / (hits + misses) since start",
            None,
            gauge.metric_type(),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_ratio_reach_the_registry() {
        let mut registry = Registry::default();
        let stats = Stats::register(&mut registry);
        stats.hits.inc_by(3);
        stats.misses.inc();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        assert!(text.contains("cache_hits_total 3"), "{text}");
        assert!(text.contains("cache_misses_total 1"), "{text}");
        assert!(text.contains("cache_hit_ratio 0.75"), "{text}");
        assert!((stats.snapshot().hit_ratio() - 0.75).abs() < f64::EPSILON);
    }
}
