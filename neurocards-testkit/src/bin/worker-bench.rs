//! Worker benchmark: N one-video jobs against FakeKie (generation takes T seconds, results
//! arrive by callback), drained by ONE real process running the pipeline with concurrency N.
//! Prints one JSON line: the store, peak RSS of that process (VmHWM), CPU seconds it used, KIE
//! calls per job, and the time to drain.
//!
//! `cargo run --release -p neurocards-testkit --bin worker-bench -- --jobs 1000 --gen-secs 5`
//!
//! - `--store postgres` (the default): one `neurocards-worker` process on a scratch database
//!   (needs `DATABASE_URL` of a server where it may create and drop a scratch database).
//! - `--store sqlite`: the embedded store serves one process only, so the `neurocards-bot`
//!   binary runs in its all-in-one mode (the pipeline in-process, `WORKER_CONCURRENCY` slots)
//!   on a temporary data directory; with callbacks it serves KIE's callback route itself.
//!
//! Add `--no-callbacks` to measure polling instead.

use anyhow::Context as _;
use neurocards_testkit::fake_kie::{CallbackMode, Endpoint, Scenario};
use neurocards_testkit::scratch_db::with_scratch_database;
use neurocards_testkit::stores::TempSqlite;
use neurocards_testkit::system::{SystemOptions, TestSystem};
use sqlx::postgres::PgConnectOptions;
use std::time::{Duration, Instant};

/// Which store the benchmark runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Store {
    Postgres,
    Sqlite,
}

impl Store {
    fn name(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Sqlite => "sqlite",
        }
    }
}

struct Args {
    jobs: u32,
    gen_secs: u64,
    callbacks: bool,
    store: Store,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args { jobs: 1000, gen_secs: 5, callbacks: true, store: Store::Postgres };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--jobs" => a.jobs = it.next().context("--jobs N")?.parse()?,
            "--gen-secs" => a.gen_secs = it.next().context("--gen-secs T")?.parse()?,
            "--no-callbacks" => a.callbacks = false,
            "--store" => {
                a.store = match it.next().context("--store postgres|sqlite")?.as_str() {
                    "postgres" => Store::Postgres,
                    "sqlite" => Store::Sqlite,
                    other => anyhow::bail!("unknown store {other} (expected postgres or sqlite)"),
                }
            }
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
    let line = match args.store {
        Store::Postgres => {
            with_scratch_database("worker_bench", |db| run_postgres(args, db)).await?
        }
        Store::Sqlite => run_sqlite(args).await?,
    };
    println!("{line}");
    Ok(())
}

/// The system's options for `args`: enough KIE keys and slots that neither limits the drain.
fn options(args: &Args) -> SystemOptions {
    SystemOptions {
        // KIE allows 20 new tasks per 10 s per key: enough keys that creation is not the limit.
        kie_keys: (1..=args.jobs.div_ceil(20).max(1)).map(|i| format!("bench-key-{i}")).collect(),
        concurrency: args.jobs,
        per_user_in_flight: 5,
        callbacks: args.callbacks,
        generation_deadline: Duration::from_secs(20 * 60),
        ..SystemOptions::default()
    }
}

/// Scripts FakeKie and places `args.jobs` one-video jobs, five per user.
async fn place_jobs(sys: &TestSystem, args: &Args) {
    sys.kie.script(Scenario::SucceedAfterTime(Duration::from_secs(args.gen_secs)));
    sys.kie.set_limit(Endpoint::Status, None);
    if args.callbacks {
        sys.kie.auto_callbacks(CallbackMode::Once, None);
    }
    let mut left = args.jobs;
    for _ in 0..args.jobs.div_ceil(5) {
        let n = left.min(5);
        left -= n;
        let user = sys.funded_user(i64::from(n)).await;
        let product = sys.product(user).await;
        sys.order(user, product, n).await;
    }
}

/// Watches the jobs (reads only) until none is open, then returns the JSON line with the
/// figures of the process `child` and kills it.
async fn drain(
    sys: &TestSystem,
    args: &Args,
    mut child: tokio::process::Child,
    started: Instant,
) -> anyhow::Result<serde_json::Value> {
    let pid = child.id().context("pid of the process under test")?;
    let mut peak_in_flight = 0i64;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            anyhow::bail!("the process under test exited early: {status}");
        }
        let running = sys.store.jobs_in("running").await;
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
    child.start_kill().ok();
    let _ = child.wait().await;

    let counts = sys.status_counts().await;
    let creates = sys.kie.create_requests().len();
    let checks = sys.kie.status_requests().len();
    let uploads = sys.kie.uploads().len();
    let jobs = f64::from(args.jobs);
    Ok(serde_json::json!({
        "store": args.store.name(),
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
    }))
}

/// PostgreSQL: places the jobs, runs one worker process until they are drained, and returns
/// the JSON line.
async fn run_postgres(args: Args, db: PgConnectOptions) -> anyhow::Result<String> {
    let pool = neurocards_core::postgres::pool_options(16).connect_with(db).await?;
    neurocards_core::postgres::migrate(&pool).await?;
    let sys = TestSystem::start_with(pool.clone(), options(&args)).await;
    place_jobs(&sys, &args).await;

    // Build (or find) the worker binary before the clock starts.
    neurocards_testkit::system::worker_binary();
    let started = Instant::now();
    let worker = sys.spawn_worker_binary();
    let line = drain(&sys, &args, worker, started).await?;
    drop(sys);
    pool.close().await;
    Ok(line.to_string())
}

/// The embedded store: places the jobs, runs the all-in-one bot until they are drained (this
/// process only reads the store meanwhile), and returns the JSON line.
async fn run_sqlite(args: Args) -> anyhow::Result<String> {
    let temp = TempSqlite::new().await;
    // The bot serves KIE's callbacks itself: on the embedded store a callback must reach the
    // process whose pipeline waits for it, so no receiver runs in this process.
    let mut sys_options = options(&args);
    sys_options.callbacks = false;
    let sys = TestSystem::start_with(temp.store.clone(), sys_options).await;
    place_jobs(&sys, &args).await;

    let mut env = sys.env();
    env.remove("DATABASE_URL");
    env.insert("BOT_MODE".to_owned(), "polling".to_owned());
    env.insert("WORKER_CONCURRENCY".to_owned(), args.jobs.to_string());
    if args.callbacks {
        // A known port, so that the callback URL given to KIE reaches the bot.
        let addr = neurocards_testkit::binaries::free_local_addr();
        env.insert("HTTP_ADDR".to_owned(), addr.to_string());
        env.insert("PUBLIC_BASE_URL".to_owned(), format!("http://{addr}"));
    } else {
        env.insert("HTTP_ADDR".to_owned(), "127.0.0.1:0".to_owned());
    }

    // Build (or find) the bot binary before the clock starts.
    let bin = neurocards_testkit::bot_harness::bot_binary();
    let started = Instant::now();
    let bot = neurocards_testkit::binaries::service_command(&bin, env)
        .spawn()
        .context("start neurocards-bot")?;
    let line = drain(&sys, &args, bot, started).await?;
    drop(sys);
    drop(temp);
    Ok(line.to_string())
}
