//! Worker benchmark: N one-video jobs against FakeKie (generation takes T seconds, results
//! arrive by callback), drained by ONE real `neurocards-worker` process with concurrency N.
//! Prints one JSON line: peak RSS of the worker (VmHWM), CPU seconds it used, KIE calls per
//! job, and the time to drain.
//!
//! `cargo run --release -p neurocards-testkit --bin worker-bench -- --jobs 1000 --gen-secs 5`
//! (needs `DATABASE_URL` of a server where it may create and drop a scratch database; add
//! `--no-callbacks` to measure polling instead).

use anyhow::Context as _;
use neurocards_testkit::fake_kie::{CallbackMode, Endpoint, Scenario};
use neurocards_testkit::scratch_db::with_scratch_database;
use neurocards_testkit::system::{SystemOptions, TestSystem};
use sqlx::postgres::PgConnectOptions;
use std::time::{Duration, Instant};

struct Args {
    jobs: u32,
    gen_secs: u64,
    callbacks: bool,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args { jobs: 1000, gen_secs: 5, callbacks: true };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--jobs" => a.jobs = it.next().context("--jobs N")?.parse()?,
            "--gen-secs" => a.gen_secs = it.next().context("--gen-secs T")?.parse()?,
            "--no-callbacks" => a.callbacks = false,
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    anyhow::ensure!(a.jobs > 0, "--jobs must be positive");
    Ok(a)
}

fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let ticks = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(100.0);
    Some((utime + stime) / ticks)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    let line = with_scratch_database("worker_bench", |db| run(args, db)).await?;
    println!("{line}");
    Ok(())
}

/// Places the jobs, runs one worker process until they are drained, and returns the JSON line.
async fn run(args: Args, db: PgConnectOptions) -> anyhow::Result<String> {
    let pool = neurocards_core::postgres::pool_options(16).connect_with(db).await?;
    neurocards_core::postgres::migrate(&pool).await?;

    let users = args.jobs.div_ceil(5);
    let options = SystemOptions {
        // KIE allows 20 new tasks per 10 s per key: enough keys that creation is not the limit.
        kie_keys: (1..=args.jobs.div_ceil(20).max(1)).map(|i| format!("bench-key-{i}")).collect(),
        concurrency: args.jobs,
        per_user_in_flight: 5,
        callbacks: args.callbacks,
        generation_deadline: Duration::from_secs(20 * 60),
        ..SystemOptions::default()
    };
    let sys = TestSystem::start_with(pool.clone(), options).await;
    sys.kie.script(Scenario::SucceedAfterTime(Duration::from_secs(args.gen_secs)));
    sys.kie.set_limit(Endpoint::Status, None);
    if args.callbacks {
        sys.kie.auto_callbacks(CallbackMode::Once, None);
    }
    let mut left = args.jobs;
    for _ in 0..users {
        let n = left.min(5);
        left -= n;
        let user = sys.funded_user(i64::from(n)).await;
        let product = sys.product(user).await;
        sys.order(user, product, n).await;
    }

    // Build (or find) the worker binary before the clock starts.
    neurocards_testkit::system::worker_binary();
    let started = Instant::now();
    let mut worker = sys.spawn_worker_binary();
    let pid = worker.id().context("worker pid")?;
    let mut peak_in_flight = 0i64;
    loop {
        let running: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE state = 'running'")
            .fetch_one(&pool)
            .await?;
        peak_in_flight = peak_in_flight.max(running);
        if sys.open_jobs().await == 0 {
            break;
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(1800), "not drained in 30 min");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let drain = started.elapsed();
    let peak_rss_kb = proc_status_kb(pid, "VmHWM:").unwrap_or(0);
    let cpu = cpu_seconds(pid).unwrap_or(0.0);
    worker.start_kill().ok();
    let _ = worker.wait().await;

    let counts = sys.status_counts().await;
    let creates = sys.kie.create_requests().len();
    let checks = sys.kie.status_requests().len();
    let uploads = sys.kie.uploads().len();
    let jobs = f64::from(args.jobs);
    let line = serde_json::json!({
        "jobs": args.jobs,
        "gen_secs": args.gen_secs,
        "callbacks": args.callbacks,
        "worker_concurrency": args.jobs,
        "peak_jobs_running": peak_in_flight,
        "peak_rss_mb": (peak_rss_kb as f64 / 1024.0 * 10.0).round() / 10.0,
        "cpu_seconds": (cpu * 100.0).round() / 100.0,
        "kie_calls_per_job": ((creates + checks + uploads) as f64 / jobs * 100.0).round() / 100.0,
        "kie_creates": creates,
        "kie_status_checks": checks,
        "kie_uploads": uploads,
        "drain_seconds": (drain.as_secs_f64() * 10.0).round() / 10.0,
        "jobs_by_state": counts,
    });
    drop(sys);
    pool.close().await;
    Ok(line.to_string())
}
