//! The pipeline's counters in Prometheus text format: jobs by outcome and error class, step
//! durations, jobs in flight, provider calls by result, rescues by reason and poison jobs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the step-duration histogram buckets.
const BUCKETS: [f64; 10] = [0.05, 0.25, 1.0, 2.5, 5.0, 15.0, 60.0, 180.0, 600.0, 1800.0];

#[derive(Debug, Default, Clone)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Counters of one pipeline. Cheap to update from every job; read by `/metrics`.
#[derive(Debug, Default)]
pub struct PipelineMetrics {
    in_flight: AtomicI64,
    jobs: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    steps: Mutex<BTreeMap<&'static str, Histogram>>,
    provider_calls: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    rescues: Mutex<BTreeMap<&'static str, u64>>,
    poison_jobs: AtomicU64,
    store_retries: Mutex<BTreeMap<&'static str, u64>>,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding a counter lock leaves valid counters behind.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl PipelineMetrics {
    /// A fenced database write failed with a retryable error and is tried again.
    pub(crate) fn store_retry(&self, write: &'static str) {
        *locked(&self.store_retries).entry(write).or_default() += 1;
    }

    /// Retries of fenced database writes so far, over all writes.
    pub fn store_retries(&self) -> u64 {
        locked(&self.store_retries).values().sum()
    }

    pub(crate) fn job_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn job_ended(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// Jobs running in this process now.
    pub fn in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub(crate) fn outcome(&self, outcome: &'static str, class: &'static str) {
        *locked(&self.jobs).entry((outcome, class)).or_default() += 1;
    }

    /// How many jobs ended with `outcome` (`succeeded`, `undeliverable`, `retried`, `failed`,
    /// `released`, `lease_lost`, `storage_error`), over all classes.
    pub fn outcomes(&self, outcome: &str) -> u64 {
        locked(&self.jobs).iter().filter(|((o, _), _)| *o == outcome).map(|(_, n)| n).sum()
    }

    pub(crate) fn step(&self, step: &'static str, took: Duration) {
        let secs = took.as_secs_f64();
        let mut steps = locked(&self.steps);
        let h = steps.entry(step).or_default();
        h.count += 1;
        h.sum += secs;
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.buckets[i] += 1;
            }
        }
    }

    pub(crate) fn provider_call(&self, call: &'static str, result: &'static str) {
        *locked(&self.provider_calls).entry((call, result)).or_default() += 1;
    }

    /// Provider calls made by this process, of one kind (`upload`, `submit`, `check`).
    pub fn provider_calls(&self, call: &str) -> u64 {
        locked(&self.provider_calls).iter().filter(|((c, _), _)| *c == call).map(|(_, n)| n).sum()
    }

    /// Counts what one rescue sweep of this process did: every rescued job by reason
    /// (`deadline` when it was failed for passing the job deadline, else `blamed` or
    /// `bystander`), and the poison jobs it failed at the blamed-rescue cap.
    pub(crate) fn rescue_sweep(&self, report: &crate::ports::RescueReport) {
        let mut rescues = locked(&self.rescues);
        for id in report.requeued.iter().chain(&report.failed).chain(&report.completed) {
            let reason = if report.past_deadline.contains(id) {
                "deadline"
            } else if report.blamed.contains(id) {
                "blamed"
            } else {
                "bystander"
            };
            *rescues.entry(reason).or_default() += 1;
        }
        let poison = report.failed.iter().filter(|id| !report.past_deadline.contains(id)).count();
        self.poison_jobs.fetch_add(poison as u64, Ordering::Relaxed);
    }

    /// Jobs this process rescued for `reason` (`bystander`, `blamed`, `deadline`).
    pub fn rescues(&self, reason: &str) -> u64 {
        locked(&self.rescues).get(reason).copied().unwrap_or(0)
    }

    /// Poison jobs this process failed at the blamed-rescue cap.
    pub fn poison_jobs(&self) -> u64 {
        self.poison_jobs.load(Ordering::Relaxed)
    }

    /// The counters in Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# HELP neurocards_jobs_in_flight Jobs running in this worker.");
        let _ = writeln!(out, "# TYPE neurocards_jobs_in_flight gauge");
        let _ = writeln!(out, "neurocards_jobs_in_flight {}", self.in_flight());

        let _ = writeln!(out, "# HELP neurocards_jobs_total Job runs by outcome and error class.");
        let _ = writeln!(out, "# TYPE neurocards_jobs_total counter");
        for ((outcome, class), n) in locked(&self.jobs).iter() {
            let _ = writeln!(
                out,
                "neurocards_jobs_total{{outcome=\"{outcome}\",class=\"{class}\"}} {n}"
            );
        }

        let _ = writeln!(out, "# HELP neurocards_provider_calls_total Provider calls by result.");
        let _ = writeln!(out, "# TYPE neurocards_provider_calls_total counter");
        for ((call, result), n) in locked(&self.provider_calls).iter() {
            let _ = writeln!(
                out,
                "neurocards_provider_calls_total{{call=\"{call}\",result=\"{result}\"}} {n}"
            );
        }

        let _ = writeln!(
            out,
            "# HELP neurocards_rescues_total Jobs rescued after their worker was lost, by reason."
        );
        let _ = writeln!(out, "# TYPE neurocards_rescues_total counter");
        for (reason, n) in locked(&self.rescues).iter() {
            let _ = writeln!(out, "neurocards_rescues_total{{reason=\"{reason}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP neurocards_poison_jobs_total Jobs failed for being blamed for too many worker deaths."
        );
        let _ = writeln!(out, "# TYPE neurocards_poison_jobs_total counter");
        let _ = writeln!(out, "neurocards_poison_jobs_total {}", self.poison_jobs());

        let _ = writeln!(
            out,
            "# HELP neurocards_store_retries_total Fenced database writes tried again after a transient error."
        );
        let _ = writeln!(out, "# TYPE neurocards_store_retries_total counter");
        for (write, n) in locked(&self.store_retries).iter() {
            let _ = writeln!(out, "neurocards_store_retries_total{{write=\"{write}\"}} {n}");
        }

        let _ = writeln!(out, "# HELP neurocards_step_seconds Duration of each job step.");
        let _ = writeln!(out, "# TYPE neurocards_step_seconds histogram");
        for (step, h) in locked(&self.steps).iter() {
            for (bound, n) in BUCKETS.iter().zip(h.buckets.iter()) {
                let _ = writeln!(
                    out,
                    "neurocards_step_seconds_bucket{{step=\"{step}\",le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "neurocards_step_seconds_bucket{{step=\"{step}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(out, "neurocards_step_seconds_sum{{step=\"{step}\"}} {}", h.sum);
            let _ = writeln!(out, "neurocards_step_seconds_count{{step=\"{step}\"}} {}", h.count);
        }
        out
    }
}
