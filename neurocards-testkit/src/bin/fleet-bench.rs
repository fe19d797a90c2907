//! Fleet benchmark: W real `neurocards-worker` processes sharing K KIE keys, N one-video jobs,
//! against FakeKie enforcing KIE's per-key limits exactly (20 creates per 10 s, 10 status
//! checks per second; a request beyond them is answered 429). Every worker draws its permits
//! from the keys' shared budgets in PostgreSQL, so together they must keep each key's limit.
//! Prints one JSON line:
//!
//! `{workers, keys, jobs, creates_per_sec, limit_creates_per_sec, utilization, kie_429s,
//! status_checks_per_job, …}`
//!
//! `cargo run --release -p neurocards-testkit --bin fleet-bench -- --workers 3 --keys 2 --jobs 300`
//!
//! `creates_per_sec` is the time average, over the busy period (from one window after the first
//! create to the last create), of the creates KIE saw in its trailing 10 s window, per second:
//! the rate the limit is measured against, whatever the shape of the bursts.
//! `limit_creates_per_sec` is K × 20 / 10 s. Needs `DATABASE_URL` of a server where it may
//! create and drop a scratch database.

use anyhow::Context as _;
use neurocards_testkit::fake_kie::{CallbackMode, Endpoint, Scenario};
use neurocards_testkit::scratch_db::with_scratch_database;
use neurocards_testkit::system::{SystemOptions, TestSystem};
use sqlx::postgres::PgConnectOptions;
use std::time::{Duration, Instant};

/// KIE's create limit: 20 per 10 s per key.
const CREATE_MAX: u32 = 20;
const CREATE_WINDOW: Duration = Duration::from_secs(10);

struct Args {
    workers: u32,
    keys: u32,
    jobs: u32,
    gen_secs: u64,
    concurrency: u32,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args { workers: 3, keys: 2, jobs: 300, gen_secs: 2, concurrency: 40 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| -> anyhow::Result<u64> {
            Ok(it.next().with_context(|| format!("{name} N"))?.parse()?)
        };
        match flag.as_str() {
            "--workers" => a.workers = u32::try_from(value("--workers")?)?,
            "--keys" => a.keys = u32::try_from(value("--keys")?)?,
            "--jobs" => a.jobs = u32::try_from(value("--jobs")?)?,
            "--gen-secs" => a.gen_secs = value("--gen-secs")?,
            "--concurrency" => a.concurrency = u32::try_from(value("--concurrency")?)?,
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    anyhow::ensure!(a.workers > 0 && a.keys > 0 && a.jobs > 0, "counts must be positive");
    Ok(a)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    let line = with_scratch_database("fleet_bench", |db| run(args, db)).await?;
    println!("{line}");
    Ok(())
}

async fn run(args: Args, db: PgConnectOptions) -> anyhow::Result<String> {
    let pool = neurocards_core::postgres::pool_options(8).connect_with(db).await?;
    neurocards_core::postgres::migrate(&pool).await?;
    let options = SystemOptions {
        kie_keys: (1..=args.keys).map(|i| format!("fleet-key-{i}")).collect(),
        concurrency: args.concurrency,
        per_user_in_flight: 5,
        callbacks: true,
        lease: Duration::from_secs(30),
        generation_deadline: Duration::from_secs(20 * 60),
        ..SystemOptions::default()
    };
    let sys = TestSystem::start_with(pool.clone(), options).await;
    sys.kie.script(Scenario::SucceedAfterTime(Duration::from_secs(args.gen_secs)));
    sys.kie.strict_limits();
    sys.kie.auto_callbacks(CallbackMode::Once, None);
    let mut left = args.jobs;
    while left > 0 {
        let n = left.min(5);
        left -= n;
        let user = sys.funded_user(i64::from(n)).await;
        let product = sys.product(user).await;
        sys.order(user, product, n).await;
    }

    // Build (or find) the worker binary before the clock starts.
    neurocards_testkit::system::worker_binary();
    let started = Instant::now();
    let mut workers: Vec<tokio::process::Child> =
        (0..args.workers).map(|_| sys.spawn_worker_binary()).collect();
    loop {
        for w in &mut workers {
            if let Ok(Some(status)) = w.try_wait() {
                anyhow::bail!("a worker exited early: {status}");
            }
        }
        if sys.open_jobs().await == 0 {
            break;
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(1800), "not drained in 30 min");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let drain = started.elapsed();
    for w in &mut workers {
        w.start_kill().ok();
        let _ = w.wait().await;
    }

    let mut created: Vec<Instant> = sys
        .kie
        .create_requests()
        .into_iter()
        .filter(|c| c.task_id.is_some())
        .map(|c| c.received_at)
        .collect();
    created.sort();
    let creates_per_sec = windowed_rate(&created, CREATE_WINDOW);
    let limit = f64::from(args.keys * CREATE_MAX) / CREATE_WINDOW.as_secs_f64();
    let rate_limited =
        sys.kie.rate_limited_count(Endpoint::Create) + sys.kie.rate_limited_count(Endpoint::Status);
    let checks = sys.kie.status_requests().len();
    let counts = sys.status_counts().await;
    let line = serde_json::json!({
        "workers": args.workers,
        "keys": args.keys,
        "jobs": args.jobs,
        "creates_per_sec": round(creates_per_sec, 3),
        "limit_creates_per_sec": round(limit, 3),
        "utilization": round(creates_per_sec / limit, 3),
        "kie_429s": rate_limited,
        "kie_429s_on_create": sys.kie.rate_limited_count(Endpoint::Create),
        "status_checks_per_job": round(checks as f64 / f64::from(args.jobs), 2),
        "tasks_created": created.len(),
        "worker_concurrency": args.concurrency,
        "gen_secs": args.gen_secs,
        "drain_seconds": round(drain.as_secs_f64(), 1),
        "jobs_by_state": counts,
    });
    drop(sys);
    pool.close().await;
    Ok(line.to_string())
}

/// The time average of "creates in the trailing `window`" over the busy period (windows ending
/// from `first + window` to `last`), divided by the window: a rate in creates per second that
/// is exactly the limit when every window is full.
fn windowed_rate(sorted: &[Instant], window: Duration) -> f64 {
    let (Some(first), Some(last)) = (sorted.first(), sorted.last()) else { return 0.0 };
    let from = *first + window;
    if last <= &from {
        let span = last.duration_since(*first).as_secs_f64().max(f64::EPSILON);
        return sorted.len() as f64 / span.max(window.as_secs_f64());
    }
    let span = last.duration_since(from).as_secs_f64();
    // Each create counts in the windows ending within [its time, its time + window).
    let covered: f64 = sorted
        .iter()
        .map(|c| {
            let start = (*c).max(from);
            let end = (*c + window).min(*last);
            end.saturating_duration_since(start).as_secs_f64()
        })
        .sum();
    covered / span / window.as_secs_f64()
}

fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}
