//! Queue benchmark: enqueue N jobs in charged orders, drain them with no-op work through the
//! real claim + complete, then measure pickup latency on an idle queue. Prints one JSON line
//! `{"store","jobs","concurrency","batch","shape","enqueue_per_sec","drain_per_sec",
//! "pickup_p50_ms","pickup_p99_ms"}`.
//!
//! ```text
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!   cargo run --release -p neurocards-testkit --bin queue-bench -- --jobs 20000 --concurrency 32
//! cargo run --release -p neurocards-testkit --bin queue-bench -- --store sqlite --jobs 10000
//! ```
//!
//! What is measured:
//! - **enqueue**: `--concurrency` tasks place orders of `--order-size` jobs (one user per order,
//!   each order charged in its own transaction, as the bot does); N / wall time.
//! - **drain** (`--shape fleet`, the default): `--concurrency` workers, each claiming up to
//!   `--batch` jobs per statement, doing the no-op work and completing the whole batch in one
//!   statement before it claims again. A job counts only once its completion has committed.
//!   Rate = N / (last completion commit − start). The default per-user cap (10) applies.
//! - **drain** (`--shape process`): ONE worker process with `--concurrency` job slots, shaped
//!   like the pipeline worker: one claimer loop claims `min(free slots, --batch)` jobs per
//!   statement and one completer commits every completion since its previous flush in one
//!   `complete` call; a slot is freed only after its job's completion has committed. At most
//!   `--concurrency` jobs are ever leased, so this shape is bound by round trips, not by the
//!   queue's capacity.
//! - **pickup**: one worker waits on the idle queue (LISTEN/NOTIFY or, on the embedded store,
//!   in-process wake-up; 1 s poll fallback);
//!   orders of one job are placed one at a time, and the time from `place_order` returning
//!   (its transaction, which sends the NOTIFY, has committed) to the worker's claim returning
//!   that job is recorded; p50 and p99 over `--pickup-samples`.
//!
//! Options: `--jobs N` (20000), `--concurrency C` (32), `--batch B` (most jobs per claim, 512),
//! `--shape fleet|process` (fleet), `--order-size S` (jobs per order, 50), `--pickup-samples P`
//! (200), `--store postgres|sqlite` (postgres). On PostgreSQL the benchmark creates its own
//! database on DATABASE_URL's server and drops it at the end; on the embedded store it opens a
//! fresh store in a temporary directory, removed at the end.

use anyhow::{bail, Context};
use neurocards_core::domain::{Credits, JobId, Lease, LedgerReason, UserId, WorkerId};
use neurocards_core::ports::{Accounts, JobQueue, NewUser};
use neurocards_core::postgres::{self, PgAccounts, PgJobQueue, QueueConfig};
use neurocards_core::sqlite::SqliteJobQueue;
use neurocards_testkit::conformance::job_queue::order;
use neurocards_testkit::scratch_db::with_scratch_database;
use neurocards_testkit::sqlite_fixtures::insert_funded_user;
use neurocards_testkit::stores::TempSqlite;
use sqlx::postgres::PgConnectOptions;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
struct Args {
    jobs: u64,
    concurrency: u32,
    batch: u32,
    order_size: u32,
    pickup_samples: u32,
    shape: Shape,
    store: Store,
}

/// Which queue adapter runs the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Store {
    Postgres,
    Sqlite,
}

/// How the drain is organised; see [`drain_fleet`] and [`drain_slots`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Fleet,
    Process,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        jobs: 20_000,
        concurrency: 32,
        batch: 512,
        order_size: 50,
        pickup_samples: 200,
        shape: Shape::Fleet,
        store: Store::Postgres,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        let number =
            || value.parse::<u64>().with_context(|| format!("{flag}: not a number: {value}"));
        match flag.as_str() {
            "--jobs" => args.jobs = number()?,
            "--concurrency" => args.concurrency = u32::try_from(number()?)?,
            "--batch" => args.batch = u32::try_from(number()?)?,
            "--order-size" => args.order_size = u32::try_from(number()?)?,
            "--pickup-samples" => args.pickup_samples = u32::try_from(number()?)?,
            "--shape" => {
                args.shape = match value.as_str() {
                    "fleet" => Shape::Fleet,
                    "process" => Shape::Process,
                    other => bail!("--shape: fleet or process, not {other}"),
                }
            }
            "--store" => {
                args.store = match value.as_str() {
                    "postgres" => Store::Postgres,
                    "sqlite" => Store::Sqlite,
                    other => bail!("--store: postgres or sqlite, not {other}"),
                }
            }
            other => bail!("unknown option {other}"),
        }
    }
    if args.jobs == 0
        || args.concurrency == 0
        || args.batch == 0
        || !(1..=1000).contains(&args.order_size)
    {
        bail!("--jobs, --concurrency and --batch must be positive; --order-size 1..=1000");
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let line = match args.store {
        Store::Postgres => with_scratch_database("queue_bench", |db| run(&args, db)).await?,
        Store::Sqlite => run_sqlite(&args).await?,
    };
    println!("{line}");
    Ok(())
}

async fn run(args: &Args, db: PgConnectOptions) -> anyhow::Result<serde_json::Value> {
    let pool = postgres::pool_options(args.concurrency + 2)
        .connect_with(db)
        .await
        .context("connect to the bench database")?;
    postgres::migrate(&pool).await?;
    let queue = Arc::new(PgJobQueue::new(pool.clone(), QueueConfig::default()));
    let accounts = PgAccounts::new(pool.clone());
    let plan = plan(args);
    for &(user, size) in plan.iter().chain([&(PICKUP_USER, args.pickup_samples)]) {
        accounts
            .register(
                &NewUser {
                    id: user,
                    username: None,
                    first_name: None,
                    language: Default::default(),
                },
                Credits::ZERO,
            )
            .await?;
        accounts.credit(user, Credits::new(i64::from(size))?, LedgerReason::Grant, "bench").await?;
    }
    measure(queue, args, plan, "postgres").await
}

/// The benchmark on a fresh embedded store in a temporary directory.
async fn run_sqlite(args: &Args) -> anyhow::Result<serde_json::Value> {
    let db = TempSqlite::new().await;
    let queue = Arc::new(SqliteJobQueue::new(&db.store, QueueConfig::default()));
    let plan = plan(args);
    for &(user, size) in plan.iter().chain([&(PICKUP_USER, args.pickup_samples)]) {
        insert_funded_user(&db.store, user, i64::from(size)).await;
    }
    let line = measure(queue, args, plan, "sqlite").await?;
    db.store.close().await;
    Ok(line)
}

/// The user whose single-job orders measure pickup latency.
const PICKUP_USER: UserId = UserId(999);

/// Orders of `--order-size` jobs (the last one smaller) adding up to `--jobs`, one user each so
/// that the per-user cap (default) stays realistic; every user must hold exactly its order's
/// price.
fn plan(args: &Args) -> Vec<(UserId, u32)> {
    let orders = args.jobs.div_ceil(u64::from(args.order_size));
    let mut plan = Vec::new();
    let mut left = args.jobs;
    for n in 0..orders {
        let size = left.min(u64::from(args.order_size)) as u32;
        left -= u64::from(size);
        plan.push((UserId(1_000_000 + n as i64), size));
    }
    plan
}

/// Enqueue, drain and pickup on `queue`, whose users of `plan` (and [`PICKUP_USER`]) are funded.
async fn measure<Q: JobQueue + 'static>(
    queue: Arc<Q>,
    args: &Args,
    plan: Vec<(UserId, u32)>,
    store: &str,
) -> anyhow::Result<serde_json::Value> {
    let started = Instant::now();
    let plan = Arc::new(plan);
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (queue, plan, next) = (queue.clone(), plan.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(&(user, size)) = plan.get(i) else { return Ok::<_, anyhow::Error>(()) };
                queue.place_order(&order(user, size, 1)).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let enqueue_secs = started.elapsed().as_secs_f64();

    let drain_secs = match args.shape {
        Shape::Fleet => drain_fleet(&queue, args).await?,
        Shape::Process => drain_slots(&queue, args).await?,
    }
    .as_secs_f64();

    let (p50, p99) = pickup(&queue, args.pickup_samples).await?;
    Ok(serde_json::json!({
        "store": store,
        "jobs": args.jobs,
        "concurrency": args.concurrency,
        "batch": args.batch,
        "shape": match args.shape { Shape::Fleet => "fleet", Shape::Process => "process" },
        "enqueue_per_sec": (args.jobs as f64 / enqueue_secs).round(),
        "drain_per_sec": (args.jobs as f64 / drain_secs).round(),
        "pickup_p50_ms": (p50 * 100.0).round() / 100.0,
        "pickup_p99_ms": (p99 * 100.0).round() / 100.0,
    }))
}

/// The drain as a fleet of `concurrency` workers (each its own worker id, on the shared pool):
/// every worker claims up to `batch` jobs in one statement, does the no-op work, and completes
/// the batch in one statement before it claims again. A job counts once its completion has
/// committed. Returns the time from the start to the last completion commit.
async fn drain_fleet<Q: JobQueue + 'static>(
    queue: &Arc<Q>,
    args: &Args,
) -> anyhow::Result<Duration> {
    let total = args.jobs;
    let completed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..args.concurrency {
        let (queue, completed) = (queue.clone(), completed.clone());
        let batch = args.batch;
        workers.push(tokio::spawn(async move {
            let me = WorkerId::new(format!("bench-{w}"));
            let mut last = None;
            while completed.load(Ordering::Acquire) < total {
                let jobs = queue.claim(&me, batch).await?;
                if jobs.is_empty() {
                    // The rest is leased by others or held back by the per-user cap; their
                    // completions free it within moments.
                    queue.wait_for_work(Duration::from_millis(1)).await?;
                    continue;
                }
                let leases: Vec<Lease> = jobs.iter().map(|j| j.lease).collect();
                let done = queue.complete(&leases).await?;
                if done.len() != leases.len() {
                    bail!("{} of {} completions refused", leases.len() - done.len(), leases.len());
                }
                completed.fetch_add(done.len() as u64, Ordering::AcqRel);
                last = Some(Instant::now());
            }
            Ok::<_, anyhow::Error>(last)
        }));
    }
    let mut finished = started;
    for w in workers {
        if let Some(at) = w.await?? {
            finished = finished.max(at);
        }
    }
    Ok(finished - started)
}

/// The drain shaped like ONE worker process with `concurrency` job slots: one claimer loop
/// claims `min(free slots, batch)` jobs per statement and one completer commits the
/// completions of every job finished since its last flush in one `complete` call. A slot is
/// freed only after its job's completion has committed, so at most `concurrency` jobs are ever
/// leased, and a job is counted only once its terminal state is durable.
///
/// Returns the time from the first claim to the last completion commit.
async fn drain_slots<Q: JobQueue + 'static>(
    queue: &Arc<Q>,
    args: &Args,
) -> anyhow::Result<Duration> {
    let total = args.jobs;
    let slots = Arc::new(Slots::new(args.concurrency));
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<Lease>();
    let started = Instant::now();

    let completer = {
        let (queue, slots) = (queue.clone(), slots.clone());
        tokio::spawn(async move {
            let mut completed = 0u64;
            let mut batch = Vec::new();
            while completed < total {
                // Wait for one finished job, then take everything else already finished.
                let Some(first) = done_rx.recv().await else {
                    bail!("the claimer stopped with {completed} of {total} jobs completed");
                };
                batch.push(first);
                while let Ok(more) = done_rx.try_recv() {
                    batch.push(more);
                }
                let done = queue.complete(&batch).await?;
                if done.len() != batch.len() {
                    bail!("{} of {} completions refused", batch.len() - done.len(), batch.len());
                }
                completed += done.len() as u64;
                slots.free(batch.len() as u32);
                batch.clear();
            }
            Ok::<_, anyhow::Error>(Instant::now())
        })
    };

    let claimer = {
        let (queue, slots) = (queue.clone(), slots.clone());
        let batch = args.batch;
        tokio::spawn(async move {
            let me = WorkerId::new("bench");
            let mut claimed = 0u64;
            while claimed < total {
                let free = slots.wait_free().await;
                let jobs = queue.claim(&me, free.min(batch)).await?;
                if jobs.is_empty() {
                    // Everything ready is capped or leased; the completer frees slots (and the
                    // cap) as it commits, and a wake-up or the short poll brings us back.
                    queue.wait_for_work(Duration::from_millis(1)).await?;
                    continue;
                }
                slots.take(jobs.len() as u32);
                claimed += jobs.len() as u64;
                // No-op work: each job is finished as soon as it is claimed.
                for job in jobs {
                    done_tx.send(job.lease).ok();
                }
            }
            Ok::<_, anyhow::Error>(())
        })
    };
    claimer.await??;
    let finished = completer.await??;
    Ok(finished - started)
}

/// Free job slots of the simulated worker process.
struct Slots {
    free: std::sync::Mutex<u32>,
    freed: tokio::sync::Notify,
}

impl Slots {
    fn new(n: u32) -> Self {
        Self { free: std::sync::Mutex::new(n), freed: tokio::sync::Notify::new() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, u32> {
        self.free.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until at least one slot is free and returns how many are.
    async fn wait_free(&self) -> u32 {
        loop {
            let notified = self.freed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let free = *self.lock();
            if free > 0 {
                return free;
            }
            notified.await;
        }
    }

    fn take(&self, n: u32) {
        let mut free = self.lock();
        *free = free.saturating_sub(n);
    }

    fn free(&self, n: u32) {
        *self.lock() += n;
        self.freed.notify_waiters();
    }
}

/// One worker waits on the idle queue; jobs are placed one at a time and the time from the
/// order's commit to the worker's claim is recorded.
async fn pickup<Q: JobQueue + 'static>(queue: &Arc<Q>, samples: u32) -> anyhow::Result<(f64, f64)> {
    let user = PICKUP_USER;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(JobId, Instant)>();
    let worker = {
        let queue = queue.clone();
        tokio::spawn(async move {
            let me = WorkerId::new("pickup");
            let mut seen = 0;
            while seen < samples {
                let jobs = queue.claim(&me, 1).await?;
                let at = Instant::now();
                if jobs.is_empty() {
                    queue.wait_for_work(Duration::from_secs(1)).await?;
                    continue;
                }
                for j in &jobs {
                    tx.send((j.lease.job_id, at)).ok();
                }
                queue.complete(&jobs.iter().map(|j| j.lease).collect::<Vec<_>>()).await?;
                seen += jobs.len() as u32;
            }
            Ok::<_, anyhow::Error>(())
        })
    };
    // Let the worker reach its first wait (and start the listener).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut placed: HashMap<JobId, Instant> = HashMap::new();
    let mut claimed: HashMap<JobId, Instant> = HashMap::new();
    for _ in 0..samples {
        let p = queue.place_order(&order(user, 1, 1)).await?;
        placed.insert(p.jobs[0], Instant::now());
        // Wait for the claim so the queue is idle again before the next sample.
        let (id, at) = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .context("the pickup worker did not claim within 5 s")?
            .context("the pickup worker stopped")?;
        claimed.insert(id, at);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    worker.await??;
    let mut waits: Vec<f64> = placed
        .iter()
        .filter_map(|(id, at)| {
            claimed.get(id).map(|c| c.saturating_duration_since(*at).as_secs_f64() * 1e3)
        })
        .collect();
    waits.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        waits.get(((waits.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0.0)
    };
    Ok((pct(0.50), pct(0.99)))
}
