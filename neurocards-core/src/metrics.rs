//! The process-wide metrics: counters, gauges and histograms with labels, rendered in the
//! Prometheus text exposition format (version 0.0.4) for `/metrics`. A thin layer over
//! [`prometheus_client`]: each metric name is one label family, created on its first use.
//! One process-wide instance ([`Metrics::global`]); tests can build their own.
//!
//! Names are exported as given. Counters carry the `_total` suffix the format requires: name
//! them `…_total` (a name without it gets it appended). A help text is shown with one final
//! period (a metric never described gets a lone period); gauge values are floats (`4.0`).

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, OnceLock};

/// The `Content-Type` of [`Metrics::render`]'s text (and of every `/metrics` body).
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Histogram buckets in seconds, from a fast HTTP call to a long generation.
const BUCKETS: [f64; 14] =
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0, 600.0];

type Labels = Vec<(String, String)>;

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// One metric name's series, of the kind its first use gave it.
#[derive(Debug, Clone)]
enum Series {
    Counter(Family<Labels, Counter>),
    Gauge(Family<Labels, Gauge<f64, AtomicU64>>),
    Histogram(Family<Labels, Histogram, fn() -> Histogram>),
}

#[derive(Debug, Default)]
struct Entry {
    /// Set by [`Metrics::describe`], before or after the first use.
    help: Option<&'static str>,
    /// Set by the first use.
    series: Option<Series>,
}

/// A metrics registry. All operations are cheap and never fail; a name used with two different
/// kinds keeps the first kind and ignores the other.
#[derive(Debug, Default)]
pub struct Metrics {
    entries: Mutex<BTreeMap<&'static str, Entry>>,
}

fn labels(pairs: &[(&'static str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

impl Metrics {
    /// The process-wide registry.
    pub fn global() -> &'static Metrics {
        static GLOBAL: OnceLock<Metrics> = OnceLock::new();
        GLOBAL.get_or_init(Metrics::default)
    }

    fn with<R>(&self, f: impl FnOnce(&mut BTreeMap<&'static str, Entry>) -> R) -> R {
        // A panic while holding the lock cannot leave the map inconsistent in a way that
        // matters for metrics, so a poisoned lock is simply reused.
        let mut guard = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    /// The series of `name`, created as `new()` on first use.
    fn series(&self, name: &'static str, new: impl FnOnce() -> Series) -> Series {
        self.with(|entries| entries.entry(name).or_default().series.get_or_insert_with(new).clone())
    }

    /// Sets the `# HELP` line of a metric (before or after its first use).
    pub fn describe(&self, name: &'static str, help: &'static str) {
        self.with(|entries| entries.entry(name).or_default().help = Some(help));
    }

    /// Adds `by` to a counter.
    pub fn counter_add(&self, name: &'static str, pairs: &[(&'static str, &str)], by: u64) {
        if let Series::Counter(family) = self.series(name, || Series::Counter(Family::default())) {
            family.get_or_create(&labels(pairs)).inc_by(by);
        }
    }

    /// Adds one to a counter.
    pub fn counter_inc(&self, name: &'static str, pairs: &[(&'static str, &str)]) {
        self.counter_add(name, pairs, 1);
    }

    /// Sets a gauge.
    pub fn gauge_set(&self, name: &'static str, pairs: &[(&'static str, &str)], value: f64) {
        if let Series::Gauge(family) = self.series(name, || Series::Gauge(Family::default())) {
            family.get_or_create(&labels(pairs)).set(value);
        }
    }

    /// Adds `delta` (may be negative) to a gauge.
    pub fn gauge_add(&self, name: &'static str, pairs: &[(&'static str, &str)], delta: f64) {
        if let Series::Gauge(family) = self.series(name, || Series::Gauge(Family::default())) {
            family.get_or_create(&labels(pairs)).inc_by(delta);
        }
    }

    /// Records one observation (in seconds) in a histogram.
    pub fn observe(&self, name: &'static str, pairs: &[(&'static str, &str)], seconds: f64) {
        let new =
            || Series::Histogram(Family::new_with_constructor(histogram as fn() -> Histogram));
        if let Series::Histogram(family) = self.series(name, new) {
            family.get_or_create(&labels(pairs)).observe(seconds);
        }
    }

    /// A counter's current value (0 when absent); for tests and admin views.
    pub fn counter_value(&self, name: &str, pairs: &[(&'static str, &str)]) -> u64 {
        let series = self.with(|entries| entries.get(name).and_then(|e| e.series.clone()));
        match series {
            Some(Series::Counter(family)) => family.get(&labels(pairs)).map_or(0, |c| c.get()),
            _ => 0,
        }
    }

    /// Everything in the Prometheus text exposition format (version 0.0.4, no terminator, so
    /// `/metrics` can append other sources), metrics sorted by name.
    pub fn render(&self) -> String {
        // The help of a metric may arrive after its first use, so the registry (which takes
        // the help at registration) is built for each rendering from the shared families.
        let mut registry = Registry::default();
        self.with(|entries| {
            for (name, entry) in entries.iter() {
                let help = entry.help.map_or("", |h| h.strip_suffix('.').unwrap_or(h));
                match &entry.series {
                    Some(Series::Counter(family)) => {
                        // The encoder appends `_total` (and refuses a name that has it).
                        let mut base: &str = name;
                        while let Some(shorter) = base.strip_suffix("_total") {
                            base = shorter;
                        }
                        registry.register(base, help, family.clone());
                    }
                    Some(Series::Gauge(family)) => registry.register(*name, help, family.clone()),
                    Some(Series::Histogram(family)) => {
                        registry.register(*name, help, family.clone())
                    }
                    None => {}
                }
            }
        });
        let mut out = String::new();
        if let Err(e) = prometheus_text::encode(&mut out, &registry) {
            tracing::warn!(error = %e, "metrics could not be rendered");
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_histograms() {
        let m = Metrics::default();
        m.describe("jobs_total", "Jobs by outcome.");
        m.counter_inc("jobs_total", &[("outcome", "succeeded")]);
        m.counter_add("jobs_total", &[("outcome", "succeeded")], 2);
        m.counter_inc("jobs_total", &[]);
        m.gauge_set("in_flight", &[], 4.0);
        m.gauge_set("queue_jobs", &[("state", "ready")], 7.0);
        m.gauge_add("queue_jobs", &[("state", "ready")], -2.5);
        m.observe("step_seconds", &[("step", "submit")], 0.2);
        let text = m.render();
        assert!(text.contains("# HELP jobs_total Jobs by outcome.\n"), "{text}");
        assert!(text.contains("# TYPE jobs_total counter\n"), "{text}");
        assert!(text.contains("\njobs_total{outcome=\"succeeded\"} 3\n"), "{text}");
        assert!(text.contains("\njobs_total 1\n"), "{text}");
        assert!(text.contains("# TYPE in_flight gauge\nin_flight 4.0\n"), "{text}");
        assert!(text.contains("queue_jobs{state=\"ready\"} 4.5\n"), "{text}");
        assert!(text.contains("# TYPE step_seconds histogram\n"), "{text}");
        assert!(text.contains("step_seconds_bucket{step=\"submit\",le=\"0.25\"} 1\n"), "{text}");
        assert!(text.contains("step_seconds_bucket{step=\"submit\",le=\"0.1\"} 0\n"), "{text}");
        assert!(text.contains("step_seconds_count{step=\"submit\"} 1\n"), "{text}");
        assert!(!text.contains("# EOF"), "other sources follow on /metrics: {text}");
        assert_eq!(m.counter_value("jobs_total", &[("outcome", "succeeded")]), 3);
        assert_eq!(m.counter_value("jobs_total", &[("outcome", "failed")]), 0);
        assert_eq!(m.counter_value("absent_total", &[]), 0);
    }

    #[test]
    fn counters_always_end_in_total_once() {
        let m = Metrics::default();
        m.counter_inc("retries", &[]);
        m.counter_inc("twice_total_total", &[]);
        let text = m.render();
        assert!(text.contains("# TYPE retries_total counter\nretries_total 1\n"), "{text}");
        assert!(text.contains("\ntwice_total 1\n"), "{text}");
        assert_eq!(m.counter_value("retries", &[]), 1);
    }

    #[test]
    fn histograms_use_the_fixed_buckets_cumulatively() {
        let m = Metrics::default();
        for seconds in [0.005, 0.3, 45.0, 900.0] {
            m.observe("call_seconds", &[], seconds);
        }
        let text = m.render();
        let buckets: Vec<(&str, &str)> = text
            .lines()
            .filter_map(|l| l.strip_prefix("call_seconds_bucket{le=\""))
            .filter_map(|l| l.split_once("\"} "))
            .collect();
        let expected = [
            ("0.005", "1"),
            ("0.01", "1"),
            ("0.025", "1"),
            ("0.05", "1"),
            ("0.1", "1"),
            ("0.25", "1"),
            ("0.5", "2"),
            ("1", "2"),
            ("2.5", "2"),
            ("5", "2"),
            ("10", "2"),
            ("30", "2"),
            ("120", "3"),
            ("600", "3"),
            ("+Inf", "4"),
        ];
        assert_eq!(buckets, expected, "{text}");
        assert!(text.contains("\ncall_seconds_sum 945.305\n"), "{text}");
        assert!(text.contains("\ncall_seconds_count 4\n"), "{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::default();
        m.counter_inc("x_total", &[("msg", "a\"b\nc\\d")]);
        let text = m.render();
        assert!(text.contains("x_total{msg=\"a\\\"b\\nc\\\\d\"} 1\n"), "{text}");
    }

    #[test]
    fn help_arrives_before_or_after_the_first_use() {
        let m = Metrics::default();
        m.describe("early", "Described first.");
        m.gauge_set("early", &[], 1.0);
        m.gauge_set("late", &[], 2.0);
        assert!(m.render().contains("# HELP late .\n"), "no help yet");
        m.describe("late", "Described after use");
        m.describe("unused", "Never set.");
        let text = m.render();
        assert!(text.contains("# HELP early Described first.\n# TYPE early gauge\n"), "{text}");
        assert!(text.contains("# HELP late Described after use.\n# TYPE late gauge\n"), "{text}");
        assert!(!text.contains("unused"), "a metric without series is not rendered: {text}");
    }

    #[test]
    fn a_name_keeps_its_first_kind() {
        let m = Metrics::default();
        m.counter_inc("mixed_total", &[]);
        m.gauge_set("mixed_total", &[], 9.0);
        m.observe("mixed_total", &[], 1.0);
        m.gauge_set("level", &[], 3.0);
        m.counter_inc("level", &[]);
        let text = m.render();
        assert!(text.contains("# TYPE mixed_total counter\nmixed_total 1\n"), "{text}");
        assert!(!text.contains("mixed_total_bucket"), "{text}");
        assert!(text.contains("# TYPE level gauge\nlevel 3.0\n"), "{text}");
        assert!(!text.contains("level_total"), "{text}");
        assert_eq!(m.counter_value("mixed_total", &[]), 1);
        assert_eq!(m.counter_value("level", &[]), 0);
    }

    #[test]
    fn a_poisoned_lock_is_reused() {
        let m = std::sync::Arc::new(Metrics::default());
        let held = m.clone();
        let _ = std::thread::spawn(move || {
            held.with(|_| panic!("poison the lock"));
        })
        .join();
        m.counter_inc("after_total", &[]);
        assert_eq!(m.counter_value("after_total", &[]), 1);
        assert!(m.render().contains("after_total 1"));
    }
}
