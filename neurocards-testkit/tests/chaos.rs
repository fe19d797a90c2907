//! The chaos suite: the real bot and three real workers against FakeTelegram and a faulty
//! FakeKie (about 10 % of calls fail, some `createTask` answers come after the worker gave up
//! with the task already created, callbacks come late, twice and out of order), while workers
//! are SIGKILLed and replaced every few seconds, one is frozen with SIGSTOP past its leases and
//! thawed, PostgreSQL is restarted once, and the bot is stopped with SIGTERM and started again.
//!
//! At the end every job is terminal, no job has more KIE tasks than attempts, no video was sent
//! twice (a send cut off by a kill or a freeze is followed by an offer to send the video, never
//! by the video again), every succeeded job reached its user as a video or an offer, every
//! failed job was refunded exactly once, the database invariants hold, and the restarted bot
//! answers `/start`. One JSON line with the counts is printed.
//!
//! It restarts the PostgreSQL server, so it is ignored by default: run it alone, after the main
//! suite, when nobody else uses the server:
//!
//! ```sh
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!     cargo test -p neurocards-testkit --test chaos -- --ignored --nocapture
//! ```
//!
//! `CHAOS_LOG_DIR=<dir>` keeps each process's log there (`bot-<n>.log`, `worker-<n>.log`, with
//! `RUST_LOG=info`). With `CHAOS_RESTART=terminate` the restart is only simulated, by terminating every backend
//! of the chaos database (what a restart does to its clients), so the suite can run beside
//! other users of the server.

use neurocards_core::domain::UserId;
use neurocards_core::postgres::discard_dead_idle;
use neurocards_testkit::binaries::{free_local_addr, send_signal, service_command, terminate};
use neurocards_testkit::bot_harness::bot_binary;
use neurocards_testkit::fake_kie::{CallbackMode, Chaos, Endpoint, Scenario};
use neurocards_testkit::fake_telegram::TgUser;
use neurocards_testkit::stores::postgres_available;
use neurocards_testkit::system::{worker_binary, SystemOptions, TestSystem};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions as _, Connection as _, PgPool};
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::str::FromStr as _;
use std::time::{Duration, Instant};
use tokio::process::Child;

const USERS: usize = 60;
const VIDEOS_PER_USER: u32 = 5;
const WORKERS: usize = 3;
/// Workers are killed and replaced this often, for the first [`CHAOS_FOR`] of the run.
const KILL_EVERY: Duration = Duration::from_secs(4);
const CHAOS_FOR: Duration = Duration::from_secs(60);
const FREEZE_AT: Duration = Duration::from_secs(6);
const FREEZE_FOR: Duration = Duration::from_secs(5);
const RESTART_DATABASE_AT: Duration = Duration::from_secs(15);
const RESTART_BOT_AT: Duration = Duration::from_secs(25);
/// Everything must be terminal by then (the whole run stays under 5 minutes).
const RUN_LIMIT: Duration = Duration::from_secs(240);

/// Runs `query` until the database answers it (the server may be restarting).
async fn retry_db<T, F, Fut>(pool: &PgPool, what: &str, query: F) -> T
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, sqlx::Error>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match query().await {
            Ok(v) => return v,
            Err(e) => {
                assert!(Instant::now() < deadline, "{what}: the database did not come back: {e}");
                discard_dead_idle(pool).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

fn restart_postgres() {
    let status = std::process::Command::new("sh")
        .args(["-c", "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main restart"])
        .status()
        .expect("pg_ctlcluster runs");
    assert!(status.success(), "PostgreSQL restarted: {status}");
}

/// A command for a service of the run, logging into `CHAOS_LOG_DIR` when it is set.
fn service(
    binary: &std::path::Path,
    env: &HashMap<String, String>,
    name: &str,
) -> tokio::process::Command {
    let mut cmd = service_command(binary, env.clone());
    if let Ok(dir) = std::env::var("CHAOS_LOG_DIR") {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::path::Path::new(&dir).join(format!("{name}-{n}.log"));
        let file = std::fs::File::create(&path).expect("a log file in CHAOS_LOG_DIR");
        cmd.env("RUST_LOG", "info").stdout(file);
    }
    cmd
}

struct Workers {
    env: HashMap<String, String>,
    running: Vec<Child>,
    killed: usize,
    /// Jobs a worker held when it was SIGKILLed: a duplicate video is attributable only to those.
    held_when_killed: BTreeSet<i64>,
    /// Jobs the frozen worker held when it was stopped: a stall past the lease is, for a send in
    /// flight, the same window as a kill.
    held_when_frozen: BTreeSet<i64>,
}

impl Workers {
    fn spawn(&mut self) {
        let child = service(&worker_binary(), &self.env, "worker")
            .spawn()
            .expect("start neurocards-worker");
        self.running.push(child);
    }

    async fn leases_of(pool: &PgPool, child: &Child) -> Vec<i64> {
        let pattern = format!("%:{}:%", child.id().unwrap_or_default());
        retry_db(pool, "leases of a worker", || {
            sqlx::query_scalar("SELECT id FROM jobs WHERE state = 'running' AND leased_by LIKE $1")
                .bind(&pattern)
                .fetch_all(pool)
        })
        .await
    }

    async fn kill_one(&mut self, pool: &PgPool) {
        if self.running.is_empty() {
            return;
        }
        let mut victim = self.running.swap_remove(fastrand::usize(..self.running.len()));
        // Read just before and after the kill: the leases name the process.
        let held = Self::leases_of(pool, &victim).await;
        let _ = victim.start_kill();
        let after = Self::leases_of(pool, &victim).await;
        let _ = victim.wait().await;
        self.held_when_killed.extend(held.into_iter().chain(after));
        self.killed += 1;
        self.spawn();
    }
}

fn bot_env(system: &TestSystem, addr: &str) -> HashMap<String, String> {
    let mut env = system.env();
    env.insert("BOT_MODE".into(), "polling".into());
    env.insert("HTTP_ADDR".into(), addr.into());
    env
}

async fn wait_ready(addr: &str, timeout: Duration) -> bool {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let ready = http.get(format!("http://{addr}/readyz")).send().await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// The job a createTask request was for: its photo was uploaded as `job-<id>.<ext>`.
fn job_of_create(body: &serde_json::Value) -> Option<i64> {
    let text = body.to_string();
    let start = text.find("job-")? + 4;
    let digits: String = text[start..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

async fn chaos_run(pool: PgPool) {
    let options = SystemOptions {
        kie_keys: (1..=6).map(|i| format!("kie-chaos-key-{i}")).collect(),
        concurrency: 16,
        per_user_in_flight: 5,
        lease: Duration::from_secs(3),
        temporary_delays: "200ms,400ms,800ms".to_owned(),
        rate_limit_delays: "200ms,400ms,800ms".to_owned(),
        generation_deadline: Duration::from_secs(90),
        ..SystemOptions::default()
    };
    let system = TestSystem::start_with(pool.clone(), options).await;
    system.kie.set_limit(Endpoint::Create, None);
    system.kie.set_limit(Endpoint::Status, None);
    system.kie.script(Scenario::SucceedAfterTime(Duration::from_secs(2)));
    system.kie.auto_callbacks(CallbackMode::Once, None);
    system.kie.chaos(Some(Chaos {
        fault_rate: 0.10,
        create_hold: Duration::from_secs(4),
        late_callbacks: Duration::from_secs(3),
        callback_retries: 4,
    }));

    let addr = free_local_addr().to_string();
    let mut env = bot_env(&system, &addr);
    // Callbacks go to the bot's /kie/callback; the workers give up on a create after 2 s.
    env.insert("PUBLIC_BASE_URL".into(), format!("http://{addr}/"));
    env.insert("KIE_REQUEST_TIMEOUT".into(), "2s".into());
    // A job whose create answer was lost adopts its task from the callback; should that callback
    // never come (refused through every retry while the bot and database restart), it creates a
    // new task after a minute rather than ten, so the run stays within its budget.
    env.insert("LOST_TASK_WAIT".into(), "60s".into());
    let mut bot = service(&bot_binary(), &env, "bot").spawn().expect("start the bot");
    assert!(wait_ready(&addr, Duration::from_secs(60)).await, "the bot is ready");
    let mut workers = Workers {
        env: env.clone(),
        running: Vec::new(),
        killed: 0,
        held_when_killed: BTreeSet::new(),
        held_when_frozen: BTreeSet::new(),
    };
    for _ in 0..WORKERS {
        workers.spawn();
    }

    let mut users: Vec<UserId> = Vec::new();
    let mut jobs = Vec::new();
    for _ in 0..USERS {
        let (user, order) =
            system.user_with_order(i64::from(VIDEOS_PER_USER), VIDEOS_PER_USER).await;
        users.push(user);
        jobs.extend(order.jobs);
    }
    let started = Instant::now();

    let mut next_kill = KILL_EVERY;
    let mut frozen: Option<Child> = None;
    let (mut froze, mut thawed, mut db_restarted, mut bot_restarted) = (false, false, false, false);
    let mut bot_stop = Duration::ZERO;
    loop {
        let now = started.elapsed();
        if now >= RUN_LIMIT {
            break;
        }
        if now < CHAOS_FOR && now >= next_kill {
            next_kill += KILL_EVERY;
            workers.kill_one(&pool).await;
        }
        if !froze && now >= FREEZE_AT && !workers.running.is_empty() {
            froze = true;
            let child = workers.running.remove(0);
            let held = Workers::leases_of(&pool, &child).await;
            workers.held_when_frozen.extend(held);
            assert!(send_signal(&child, "STOP"), "SIGSTOP delivered");
            frozen = Some(child);
        }
        if froze && !thawed && now >= FREEZE_AT + FREEZE_FOR {
            thawed = true;
            if let Some(child) = frozen.take() {
                assert!(send_signal(&child, "CONT"), "SIGCONT delivered");
                workers.running.push(child);
            }
        }
        if !db_restarted && now >= RESTART_DATABASE_AT {
            db_restarted = true;
            if std::env::var("CHAOS_RESTART").is_ok_and(|v| v == "terminate") {
                let cut = neurocards_testkit::pg::terminate_backends(&pool).await;
                println!("{cut} database connections cut at {:?}", started.elapsed());
            } else {
                tokio::task::spawn_blocking(restart_postgres).await.expect("restart task");
                println!("PostgreSQL restarted at {:?}", started.elapsed());
            }
        }
        if !bot_restarted && now >= RESTART_BOT_AT {
            bot_restarted = true;
            let (status, took) = terminate(&mut bot, Duration::from_secs(10))
                .await
                .expect("the bot stops on SIGTERM");
            assert!(status.success(), "the bot exits 0: {status}");
            bot_stop = took;
            bot = service(&bot_binary(), &env, "bot").spawn().expect("restart the bot");
        }
        let open: i64 = retry_db(&pool, "open jobs", || {
            sqlx::query_scalar("SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')")
                .fetch_one(&pool)
        })
        .await;
        if open == 0 && bot_restarted && thawed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let elapsed = started.elapsed();

    // Every job terminal.
    let states: Vec<(i64, String, i32, i64)> = retry_db(&pool, "jobs", || {
        sqlx::query_as("SELECT id, state::text, attempt, user_id FROM jobs ORDER BY id")
            .fetch_all(&pool)
    })
    .await;
    let open: Vec<_> =
        states.iter().filter(|(_, s, _, _)| s == "queued" || s == "running").collect();
    assert!(open.is_empty(), "jobs still open after {elapsed:?}: {open:?}");
    let count = |state: &str| states.iter().filter(|(_, s, _, _)| s == state).count();
    let succeeded = count("succeeded");
    let failed = count("failed");

    // At most one KIE task per attempt.
    let mut tasks_per_job: HashMap<i64, u32> = HashMap::new();
    for create in system.kie.create_requests() {
        if create.task_id.is_some() {
            if let Some(job) = job_of_create(&create.body) {
                *tasks_per_job.entry(job).or_default() += 1;
            }
        }
    }
    let over: Vec<_> = states
        .iter()
        .filter(|(id, _, attempt, _)| {
            tasks_per_job.get(id).copied().unwrap_or(0) > u32::try_from(*attempt).unwrap_or(0)
        })
        .collect();
    assert!(over.is_empty(), "jobs with more KIE tasks than attempts: {over:?}");

    // Videos: at most one per succeeded job. A send a kill or a freeze cut off is followed by
    // an offer ("Send the video"), never by a second video; so each succeeded job reached its
    // user as a video, an offer, or both.
    let (mut duplicates, mut offers, mut offers_of_held_jobs) = (0usize, 0usize, 0usize);
    let mut unexplained = Vec::new();
    for user in &users {
        let videos = system.videos_to(*user).len();
        let offered = system.telegram.video_offers_to(user.get());
        let theirs: Vec<_> = states.iter().filter(|(_, _, _, u)| *u == user.get()).collect();
        let delivered = theirs.iter().filter(|(_, s, _, _)| s == "succeeded").count();
        assert!(
            videos + offered.len() >= delivered,
            "user {user}: {videos} videos and {} offers for {delivered} jobs",
            offered.len()
        );
        offers += offered.len();
        offers_of_held_jobs += offered
            .iter()
            .filter(|id| {
                workers.held_when_killed.contains(id) || workers.held_when_frozen.contains(id)
            })
            .count();
        if videos > delivered {
            duplicates += videos - delivered;
            unexplained.push((user.get(), videos, delivered));
            for m in system.videos_to(*user) {
                println!("user {user}: video message {} caption {:?}", m.message_id, m.caption);
            }
        }
    }

    // Failed jobs refunded exactly once, balances and leases consistent.
    let refunds: Vec<(i64, i64)> = retry_db(&pool, "refunds", || {
        sqlx::query_as(
            "SELECT j.id, count(l.id) FROM jobs j \
             LEFT JOIN ledger l ON l.job_id = j.id AND l.reason = 'refund' \
             WHERE j.state = 'failed' GROUP BY j.id",
        )
        .fetch_all(&pool)
    })
    .await;
    assert!(refunds.iter().all(|(_, n)| *n == 1), "failed jobs refunded once: {refunds:?}");
    system.assert_invariants().await;

    // The restarted bot answers.
    assert!(wait_ready(&addr, Duration::from_secs(30)).await, "the restarted bot is ready");
    let tg = &system.telegram;
    let user = TgUser::new(93_001).language("en");
    tg.push_update(tg.command_update(&user, "/start"));
    let answered = tg
        .wait_until(Duration::from_secs(30), |t| {
            t.messages_to(user.id)
                .iter()
                .any(|m| m.callback_data().iter().any(|d| d.starts_with("terms")))
        })
        .await;
    assert!(answered, "the bot answers /start after its restart");

    let chaos = system.kie.chaos_counts();
    let summary = serde_json::json!({
        "jobs": states.len(),
        "succeeded": succeeded,
        "failed": failed,
        "kie_tasks": system.kie.tasks_created(),
        "videos": users.iter().map(|u| system.videos_to(*u).len()).sum::<usize>(),
        "duplicate_videos": duplicates,
        "videos_offered": offers,
        "offers_of_jobs_a_killed_or_frozen_worker_held": offers_of_held_jobs,
        "workers_killed": workers.killed,
        "jobs_held_by_killed_workers": workers.held_when_killed.len(),
        "jobs_held_by_the_frozen_worker": workers.held_when_frozen.len(),
        "bot_stop_ms": bot_stop.as_millis() as u64,
        "run_secs": elapsed.as_secs_f64(),
        "kie_faults": chaos,
    });
    println!("{summary}");
    assert!(
        unexplained.is_empty(),
        "videos sent twice (user, videos, delivered jobs): {unexplained:?}"
    );

    let _ = terminate(&mut bot, Duration::from_secs(10)).await;
    for mut w in workers.running {
        let _ = terminate(&mut w, Duration::from_secs(30)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "restarts the PostgreSQL server: run alone with --ignored"]
async fn the_system_keeps_its_promises_through_chaos() {
    if !postgres_available() {
        return;
    }
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL is set");
    let server = PgConnectOptions::from_str(&url).expect("DATABASE_URL is a postgres URL");
    let name = format!("chaos_{:08x}", fastrand::u32(..));
    let mut admin = server.connect().await.expect("connect to DATABASE_URL");
    // DDL takes no bind parameters; the name is ours (a fixed prefix and hex digits).
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.expect("create");
    let _ = admin.close().await;

    let pool = PgPoolOptions::new()
        .max_connections(8)
        .connect_with(server.clone().database(&name))
        .await
        .expect("connect to the chaos database");
    neurocards_core::postgres::migrate(&pool).await.expect("migrate");
    let run = tokio::spawn(chaos_run(pool.clone()));
    let outcome = run.await;
    pool.close().await;

    // A fresh connection: the one from before the restart is gone.
    let mut admin = server.connect().await.expect("connect to DATABASE_URL");
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await;
    match outcome {
        Ok(()) => {}
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("the chaos run did not finish: {e}"),
    }
}
