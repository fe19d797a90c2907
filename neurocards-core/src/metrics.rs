//! A small Prometheus registry: counters, gauges and histograms with labels, rendered in the
//! text exposition format for `/metrics`. One process-wide instance ([`Metrics::global`]);
//! tests can build their own.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};

/// Histogram buckets in seconds, from a fast HTTP call to a long generation.
const BUCKETS: [f64; 14] =
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0, 600.0];

type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Clone)]
enum Value {
    Counter(u64),
    Gauge(f64),
    Histogram { counts: [u64; BUCKETS.len()], sum: f64, count: u64 },
}

#[derive(Debug, Default)]
struct Registry {
    help: BTreeMap<&'static str, &'static str>,
    series: BTreeMap<&'static str, BTreeMap<Labels, Value>>,
}

/// A metrics registry. All operations are cheap and never fail; a name used with two different
/// kinds keeps the first kind and ignores the other.
#[derive(Debug, Default)]
pub struct Metrics {
    registry: Mutex<Registry>,
}

fn labels(pairs: &[(&'static str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

impl Metrics {
    /// The process-wide registry.
    pub fn global() -> &'static Metrics {
        static GLOBAL: OnceLock<Metrics> = OnceLock::new();
        GLOBAL.get_or_init(Metrics::default)
    }

    fn with<R>(&self, f: impl FnOnce(&mut Registry) -> R) -> R {
        // A panic while holding the lock cannot leave the maps inconsistent in a way that
        // matters for metrics, so a poisoned lock is simply reused.
        let mut guard = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    /// Sets the `# HELP` line of a metric.
    pub fn describe(&self, name: &'static str, help: &'static str) {
        self.with(|r| {
            r.help.insert(name, help);
        });
    }

    /// Adds `by` to a counter.
    pub fn counter_add(&self, name: &'static str, pairs: &[(&'static str, &str)], by: u64) {
        self.with(|r| {
            let v =
                r.series.entry(name).or_default().entry(labels(pairs)).or_insert(Value::Counter(0));
            if let Value::Counter(c) = v {
                *c = c.saturating_add(by);
            }
        });
    }

    /// Adds one to a counter.
    pub fn counter_inc(&self, name: &'static str, pairs: &[(&'static str, &str)]) {
        self.counter_add(name, pairs, 1);
    }

    /// Sets a gauge.
    pub fn gauge_set(&self, name: &'static str, pairs: &[(&'static str, &str)], value: f64) {
        self.with(|r| {
            let v =
                r.series.entry(name).or_default().entry(labels(pairs)).or_insert(Value::Gauge(0.0));
            if let Value::Gauge(g) = v {
                *g = value;
            }
        });
    }

    /// Adds `delta` (may be negative) to a gauge.
    pub fn gauge_add(&self, name: &'static str, pairs: &[(&'static str, &str)], delta: f64) {
        self.with(|r| {
            let v =
                r.series.entry(name).or_default().entry(labels(pairs)).or_insert(Value::Gauge(0.0));
            if let Value::Gauge(g) = v {
                *g += delta;
            }
        });
    }

    /// Records one observation (in seconds) in a histogram.
    pub fn observe(&self, name: &'static str, pairs: &[(&'static str, &str)], seconds: f64) {
        self.with(|r| {
            let v = r
                .series
                .entry(name)
                .or_default()
                .entry(labels(pairs))
                .or_insert(Value::Histogram { counts: [0; BUCKETS.len()], sum: 0.0, count: 0 });
            if let Value::Histogram { counts, sum, count } = v {
                for (i, upper) in BUCKETS.iter().enumerate() {
                    if seconds <= *upper {
                        counts[i] += 1;
                    }
                }
                *sum += seconds;
                *count += 1;
            }
        });
    }

    /// A counter's current value (0 when absent); for tests and admin views.
    pub fn counter_value(&self, name: &str, pairs: &[(&'static str, &str)]) -> u64 {
        let key = labels(pairs);
        self.with(|r| match r.series.get(name).and_then(|s| s.get(&key)) {
            Some(Value::Counter(c)) => *c,
            _ => 0,
        })
    }

    /// Everything in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        self.with(|r| {
            let mut out = String::new();
            for (name, series) in &r.series {
                let kind = match series.values().next() {
                    Some(Value::Counter(_)) => "counter",
                    Some(Value::Gauge(_)) => "gauge",
                    Some(Value::Histogram { .. }) => "histogram",
                    None => continue,
                };
                if let Some(help) = r.help.get(name) {
                    let _ = writeln!(out, "# HELP {name} {help}");
                }
                let _ = writeln!(out, "# TYPE {name} {kind}");
                for (labels, value) in series {
                    match value {
                        Value::Counter(c) => {
                            let _ = writeln!(out, "{name}{} {c}", fmt_labels(labels, None));
                        }
                        Value::Gauge(g) => {
                            let _ = writeln!(out, "{name}{} {g}", fmt_labels(labels, None));
                        }
                        Value::Histogram { counts, sum, count } => {
                            for (i, upper) in BUCKETS.iter().enumerate() {
                                let le = upper.to_string();
                                let _ = writeln!(
                                    out,
                                    "{name}_bucket{} {}",
                                    fmt_labels(labels, Some(&le)),
                                    counts[i]
                                );
                            }
                            let _ = writeln!(
                                out,
                                "{name}_bucket{} {count}",
                                fmt_labels(labels, Some("+Inf"))
                            );
                            let _ = writeln!(out, "{name}_sum{} {sum}", fmt_labels(labels, None));
                            let _ =
                                writeln!(out, "{name}_count{} {count}", fmt_labels(labels, None));
                        }
                    }
                }
            }
            out
        })
    }
}

fn fmt_labels(labels: &Labels, le: Option<&str>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| {
            format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n"))
        })
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_histograms() {
        let m = Metrics::default();
        m.describe("jobs_total", "Jobs by outcome");
        m.counter_inc("jobs_total", &[("outcome", "succeeded")]);
        m.counter_add("jobs_total", &[("outcome", "succeeded")], 2);
        m.gauge_set("in_flight", &[], 4.0);
        m.observe("step_seconds", &[("step", "submit")], 0.2);
        let text = m.render();
        assert!(text.contains("# HELP jobs_total Jobs by outcome"));
        assert!(text.contains("jobs_total{outcome=\"succeeded\"} 3"));
        assert!(text.contains("in_flight 4"));
        assert!(text.contains("step_seconds_bucket{step=\"submit\",le=\"0.25\"} 1"));
        assert!(text.contains("step_seconds_bucket{step=\"submit\",le=\"0.1\"} 0"));
        assert!(text.contains("step_seconds_count{step=\"submit\"} 1"));
        assert_eq!(m.counter_value("jobs_total", &[("outcome", "succeeded")]), 3);
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::default();
        m.counter_inc("x", &[("msg", "a\"b\nc")]);
        assert!(m.render().contains("x{msg=\"a\\\"b\\nc\"} 1"));
    }
}
