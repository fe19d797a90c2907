//! Real worker processes killed for real: a crash-looping fleet costs time, not customers'
//! videos; a poison job that kills every worker submitting it is found and failed with refund,
//! while the other jobs of the workers it killed are delivered.

use neurocards_core::domain::{
    Credits, GenerationOptions, JobId, JobSpec, JobStatus, Language, OrderKey, TemplateId, UserId,
    VideoCount,
};
use neurocards_core::ports::{JobSnapshot, NewOrder};
use neurocards_testkit::binaries::{service_command, workspace_binary};
use neurocards_testkit::fake_kie::{CallbackMode, Scenario};
use neurocards_testkit::stores::pg_database;
use neurocards_testkit::system::{SystemOptions, TestSystem};
use sqlx::PgPool;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// The default cap on blamed rescues (`MAX_RESCUES`).
const MAX_RESCUES: u32 = 3;

/// Kills a worker process with SIGKILL and reaps it.
async fn kill(process: &mut Child) {
    let _ = process.start_kill();
    let _ = process.wait().await;
}

/// The process ids of the workers holding a lease now (a worker process's id is
/// `host:pid:start-millis:random`).
async fn lease_holders(pool: &PgPool) -> Vec<u32> {
    let holders: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT leased_by FROM jobs WHERE state = 'running'")
            .fetch_all(pool)
            .await
            .expect("read lease holders");
    holders.iter().filter_map(|w| w.split(':').nth(1)?.parse().ok()).collect()
}

/// Refunds written for `jobs`.
async fn refunds(pool: &PgPool, jobs: &[JobId]) -> i64 {
    let ids: Vec<i64> = jobs.iter().map(|j| j.get()).collect();
    sqlx::query_scalar("SELECT count(*) FROM ledger WHERE reason = 'refund' AND job_id = ANY($1)")
        .bind(&ids)
        .fetch_one(pool)
        .await
        .expect("count refunds")
}

fn summary(snaps: &[JobSnapshot]) -> String {
    snaps
        .iter()
        .map(|j| format!("{}:{:?}/r{}/b{}", j.id, j.status, j.rescues, j.blamed_rescues))
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test]
async fn a_crash_looping_fleet_delivers_every_job_once_and_refunds_none() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    // Ten slots per worker: the three hold all thirty jobs between them, so every kill orphans
    // a third of them. Enough keys that KIE's per-key create limit never delays a job.
    let options = SystemOptions {
        kie_keys: (1..=4).map(|i| format!("kie-crash-key-{i}")).collect(),
        lease: Duration::from_secs(3),
        callbacks: true,
        concurrency: 10,
        ..SystemOptions::default()
    };
    let sys = TestSystem::start_with(pool.clone(), options).await;
    // Generation outlasts several kills: every job is orphaned again and again on its way.
    sys.kie.script(Scenario::SucceedAfterTime(Duration::from_secs(20)));
    sys.kie.auto_callbacks(CallbackMode::Once, None);
    let mut users = Vec::new();
    let mut jobs = Vec::new();
    for _ in 0..10 {
        let (user, order) = sys.user_with_order(3, 3).await;
        users.push(user);
        jobs.extend(order.jobs);
    }

    let mut fleet: Vec<Child> = (0..3).map(|_| sys.spawn_worker_binary()).collect();
    let seed = fastrand::u64(..);
    let mut rng = fastrand::Rng::with_seed(seed);
    eprintln!("crash loop seed {seed}");
    // Every 1-2 s, one of the three (at random among those holding jobs) is killed with SIGKILL
    // and replaced, while jobs are open, for at most 45 s.
    let chaos = Instant::now();
    let mut kills = 0;
    while chaos.elapsed() < Duration::from_secs(45) && sys.open_jobs().await > 0 {
        tokio::time::sleep(Duration::from_millis(rng.u64(1000..2000))).await;
        let holders = lease_holders(&pool).await;
        let busy: Vec<usize> = (0..fleet.len())
            .filter(|i| fleet[*i].id().is_some_and(|pid| holders.contains(&pid)))
            .collect();
        let victim =
            if busy.is_empty() { rng.usize(..fleet.len()) } else { busy[rng.usize(..busy.len())] };
        kill(&mut fleet[victim]).await;
        fleet[victim] = sys.spawn_worker_binary();
        kills += 1;
    }
    let snaps = sys.wait_jobs(&jobs, Duration::from_secs(30)).await;
    for process in &mut fleet {
        kill(process).await;
    }
    eprintln!("{kills} kills in {:?}: {}", chaos.elapsed(), summary(&snaps));

    assert!(kills >= 5, "the fleet crash-looped ({kills} kills)");
    let failed: Vec<&JobSnapshot> =
        snaps.iter().filter(|j| j.status != JobStatus::Succeeded).collect();
    assert!(failed.is_empty(), "every job is delivered: {}", summary(&snaps));
    assert_eq!(refunds(&pool, &jobs).await, 0, "nothing refunded");
    let most = snaps.iter().map(|j| j.rescues).max().unwrap_or(0);
    assert!(
        most > MAX_RESCUES,
        "some job lost its worker more often than MAX_RESCUES ({most}), and still succeeded"
    );
    // A video whose send was cut off by a kill is offered ("Send the video") rather than sent
    // again: each job reaches its user exactly once, as the video or as the offer, or as both
    // when the cut-off send had arrived — never as two videos.
    for user in &users {
        assert!(
            sys.telegram
                .wait_until(Duration::from_secs(10), |t| {
                    t.videos_to(user.get()).len() + t.video_offers_to(user.get()).len() >= 3
                })
                .await,
            "user {user} got every video"
        );
    }
    eprintln!("every user reached after {:?}", chaos.elapsed());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut offers = 0;
    for user in &users {
        let videos = sys.videos_to(*user).len();
        let offered = sys.telegram.video_offers_to(user.get());
        eprintln!("user {user}: {videos} videos, offers for {offered:?}");
        assert!(videos <= 3, "user {user}: no video twice ({videos} videos)");
        let distinct: std::collections::HashSet<&i64> = offered.iter().collect();
        assert_eq!(distinct.len(), offered.len(), "user {user}: one offer per job at most");
        assert!(videos + offered.len() >= 3, "user {user}: every video or its offer arrived");
        assert_eq!(sys.balance(*user).await, 0, "user {user}: charged, not refunded");
        offers += offered.len();
    }
    eprintln!("{offers} videos offered after a cut-off send");
    sys.assert_invariants().await;
}

/// Text in an order's wishes that makes `poison-worker` abort when it submits the prompt.
const POISON_MARKER: &str = "poisonpill7f3a";

/// A `poison-worker` process against the system: the worker environment without an LLM (so
/// the template prompt carries the wishes, marker included) plus the marker.
fn spawn_poison_worker(sys: &TestSystem) -> Child {
    let mut env = sys.env();
    env.remove("OPENAI_API_KEY");
    env.insert("POISON_MARKER".to_owned(), POISON_MARKER.to_owned());
    // The poison aborts before its create request leaves: there is never a task to adopt, so
    // the wait for one is kept short.
    env.insert("LOST_TASK_WAIT".to_owned(), "1s".to_owned());
    let binary = workspace_binary("poison-worker", "NEUROCARDS_POISON_WORKER_BIN");
    let mut cmd: Command = service_command(&binary, env);
    cmd.spawn().expect("start poison-worker")
}

#[tokio::test]
async fn a_poison_job_is_failed_with_refund_and_its_workers_other_jobs_are_delivered() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let options = SystemOptions {
        lease: Duration::from_secs(3),
        callbacks: true,
        concurrency: 4,
        ..SystemOptions::default()
    };
    let sys = TestSystem::start_with(pool.clone(), options).await;
    sys.kie.script(Scenario::SucceedAfterTime(Duration::from_secs(3)));
    sys.kie.auto_callbacks(CallbackMode::Once, None);

    let poisoned = sys.funded_user(1).await;
    let product = sys.product(poisoned).await;
    let poison_order = NewOrder {
        user_id: poisoned,
        key: OrderKey::random(),
        count: VideoCount::bulk(1).expect("count"),
        price_per_video: Credits::new(1).expect("price"),
        spec: JobSpec {
            product_id: Some(product),
            template: TemplateId::parse("ugc").expect("template"),
            wishes: Some(format!("with a {POISON_MARKER} sticker on the lid")),
            user_prompt: None,
            model: None,
            options: GenerationOptions::default(),
            language: Language::En,
        },
    };
    let poison = sys.queue.place_order(&poison_order).await.expect("order").jobs[0];
    let mut users: Vec<UserId> = Vec::new();
    let mut others: Vec<JobId> = Vec::new();
    for _ in 0..4 {
        let (user, order) = sys.user_with_order(2, 2).await;
        users.push(user);
        others.extend(order.jobs);
    }

    // Three workers, each restarted as soon as it dies (as systemd would).
    let mut fleet: Vec<Child> = (0..3).map(|_| spawn_poison_worker(&sys)).collect();
    let mut crashes = 0u32;
    let mut all = others.clone();
    all.push(poison);
    let deadline = Instant::now() + Duration::from_secs(80);
    loop {
        for process in &mut fleet {
            if let Ok(Some(_)) = process.try_wait() {
                crashes += 1;
                *process = spawn_poison_worker(&sys);
            }
        }
        let mut open = 0;
        for id in &all {
            if !sys.job(*id).await.status.is_terminal() {
                open += 1;
            }
        }
        if open == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{open} jobs still open after {crashes} crashes");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let job = sys.job(poison).await;
    let snaps = sys.wait_jobs(&others, Duration::from_secs(1)).await;
    eprintln!(
        "{crashes} crashes; poison {}; others {}",
        summary(std::slice::from_ref(&job)),
        summary(&snaps)
    );
    assert_eq!(job.status, JobStatus::Failed);
    assert!(job.refunded);
    assert_eq!(job.blamed_rescues, MAX_RESCUES + 1, "failed on the blamed rescue after the cap");
    assert!(job.error_message.as_deref().unwrap_or_default().contains("poison"), "{job:?}");
    assert_eq!(sys.balance(poisoned).await, 1, "the poison job's credit is back");
    assert!(crashes > MAX_RESCUES, "each blamed rescue followed a crash ({crashes})");

    // The user is told once, with the refund.
    let told = |t: &neurocards_testkit::fake_telegram::FakeTelegram| {
        t.texts_to(poisoned.get()).iter().filter(|m| m.starts_with('❌')).count()
    };
    assert!(sys.telegram.wait_until(Duration::from_secs(10), |t| told(t) >= 1).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(told(&sys.telegram), 1, "one failure notice");
    let notice = sys
        .telegram
        .texts_to(poisoned.get())
        .into_iter()
        .find(|m| m.starts_with('❌'))
        .unwrap_or_default();
    assert!(notice.contains("returned to your balance"), "{notice}");

    // The poison's neighbours, orphaned with it, are delivered without refund.
    assert!(
        snaps.iter().all(|j| j.status == JobStatus::Succeeded),
        "every other job is delivered: {}",
        summary(&snaps)
    );
    assert!(snaps.iter().any(|j| j.rescues > 0), "some jobs were orphaned by the crashes");
    assert_eq!(refunds(&pool, &others).await, 0);
    let mut per_user: HashMap<UserId, usize> = HashMap::new();
    for j in &snaps {
        *per_user.entry(j.user_id).or_default() += 1;
    }
    for user in &users {
        assert!(
            sys.telegram
                .wait_until(Duration::from_secs(10), |t| t.videos_to(user.get()).len() >= 2)
                .await
        );
        assert_eq!(sys.videos_to(*user).len(), per_user[user], "user {user}: each video once");
        assert_eq!(sys.balance(*user).await, 0, "user {user}: nothing refunded");
    }
    for process in &mut fleet {
        kill(process).await;
    }
    sys.assert_invariants().await;
}
