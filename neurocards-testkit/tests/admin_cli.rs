//! `neurocards-admin`, the real binary, on both stores (a scratch PostgreSQL database and an
//! embedded store in a temporary directory): migrations, a grant and the balance that shows
//! it, a queued job listed and cancelled with its refund, a failed job retried (charged again,
//! once), the statistics as JSON, and bad input refused with a sentence and a non-zero exit.
//! Also: `--help` of the three binaries.

use neurocards_core::domain::{Credits, ErrorClass, JobId, Language, UserId, WorkerId};
use neurocards_core::ports::{JobFailure, NewUser};
use neurocards_core::queue_config::QueueConfig;
use neurocards_core::stores::Stores;
use neurocards_testkit::binaries::admin_binary;
use neurocards_testkit::conformance::job_queue::order;
use neurocards_testkit::invariants::{assert_invariants, assert_invariants_sqlite};
use neurocards_testkit::stores::{pg_database, TempSqlite};
use std::process::Output;

/// The admin binary with only `env` (plus `PATH`) in its environment.
struct Admin {
    env: Vec<(String, String)>,
}

/// What one run printed.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Admin {
    fn new(store_var: &str, store_value: String) -> Self {
        Self {
            env: vec![
                ("BOT_TOKEN".to_owned(), "1:admin-test".to_owned()),
                (store_var.to_owned(), store_value),
            ],
        }
    }

    async fn run(&self, args: &[&str]) -> Run {
        let mut cmd = tokio::process::Command::new(admin_binary());
        cmd.env_clear().envs(self.env.iter().cloned()).args(args);
        if let Ok(path) = std::env::var("PATH") {
            cmd.env("PATH", path);
        }
        let out: Output = cmd.output().await.expect("run neurocards-admin");
        let run = Run {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        assert!(!run.stderr.contains("panicked"), "{args:?}: {}", run.stderr);
        run
    }

    /// Runs `args`, which must succeed, and returns its output.
    async fn ok(&self, args: &[&str]) -> String {
        let run = self.run(args).await;
        assert!(run.ok, "{args:?} failed: {}{}", run.stdout, run.stderr);
        run.stdout
    }

    /// Runs `args`, which must fail with `message` on stderr.
    async fn refused(&self, args: &[&str], message: &str) {
        let run = self.run(args).await;
        assert!(!run.ok, "{args:?} must fail, printed {}", run.stdout);
        assert!(run.stderr.contains(message), "{args:?}: expected {message:?} in {}", run.stderr);
    }
}

fn credits(n: i64) -> Credits {
    Credits::new(n).expect("non-negative")
}

/// The whole scenario on one store: `stores` are the test's own ports on the same store.
async fn scenario(admin: &Admin, stores: &Stores) {
    let out = admin.ok(&["migrate"]).await;
    assert!(out.contains("migrations applied"), "{out}");

    let user = UserId(77_001);
    let new = NewUser {
        id: user,
        username: Some("shop".into()),
        first_name: None,
        language: Language::En,
    };
    stores.accounts.register(&new, Credits::ZERO).await.expect("register the user");

    // A grant, and the balance that shows it.
    let out = admin.ok(&["grant", "77001", "5", "--note", "contest prize"]).await;
    assert!(out.contains("granted 5 credits to user 77001: balance 5"), "{out}");
    assert_eq!(stores.accounts.balance(user).await.expect("balance"), credits(5));
    let out = admin.ok(&["balance", "77001"]).await;
    assert!(out.contains("user 77001 @shop: balance 5 credits"), "{out}");
    assert!(out.contains("+5  grant") && out.contains("\"contest prize\""), "{out}");

    // A queued job is listed, and cancelling it refunds it.
    let placed = stores.queue.place_order(&order(user, 1, 2)).await.expect("order");
    let queued = placed.jobs[0];
    assert_eq!(stores.accounts.balance(user).await.expect("balance"), credits(3));
    let out = admin.ok(&["jobs", "list", "--state", "queued"]).await;
    assert!(out.contains(&format!("job {queued}  queued  order {}", placed.order_id)), "{out}");
    assert!(out.contains("1 jobs"), "{out}");
    let out = admin.ok(&["jobs", "cancel", &queued.to_string()]).await;
    assert!(
        out.contains(&format!("job {queued} cancelled: refunded 2 credits, user 77001 balance 5")),
        "{out}"
    );
    assert!(admin.ok(&["balance", "77001"]).await.contains("balance 5 credits"));
    admin.refused(&["jobs", "cancel", &queued.to_string()], "is already cancelled").await;
    admin
        .refused(&["jobs", "retry", &queued.to_string()], "only a failed job can be retried")
        .await;

    // A failed (refunded) job retried: a new job, charged again, once.
    let placed = stores.queue.place_order(&order(user, 1, 2)).await.expect("second order");
    let failed = placed.jobs[0];
    let claimed = stores.queue.claim(&WorkerId::new("w"), 1).await.expect("claim").remove(0);
    assert_eq!(claimed.lease.job_id, failed);
    let failure = JobFailure { class: ErrorClass::Temporary, message: "provider down".into() };
    stores.queue.fail(claimed.lease, &failure).await.expect("fail");
    assert_eq!(stores.accounts.balance(user).await.expect("balance"), credits(5));
    let out = admin.ok(&["jobs", "list", "--state", "failed"]).await;
    assert!(out.contains(&format!("job {failed}  failed")) && out.contains("refunded"), "{out}");
    let out = admin.ok(&["jobs", "retry", &failed.to_string()]).await;
    assert!(out.contains(&format!("job {failed} retried as job")), "{out}");
    assert!(out.contains("charged 2 credits, user 77001 balance 3"), "{out}");
    assert_eq!(stores.accounts.balance(user).await.expect("balance"), credits(3));
    let out = admin.ok(&["jobs", "retry", &failed.to_string()]).await;
    assert!(out.contains("was already retried") && out.contains("nothing charged"), "{out}");
    assert_eq!(stores.accounts.balance(user).await.expect("balance"), credits(3));
    let out = admin.ok(&["jobs", "list", "--state", "queued", "--limit", "5"]).await;
    assert!(out.contains("1 jobs"), "the retry waits: {out}");
    let retried: Vec<JobId> = stores
        .queue
        .list_jobs(
            neurocards_core::ports::JobFilter::Status(neurocards_core::domain::JobStatus::Queued),
            5,
        )
        .await
        .expect("list")
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(retried.len(), 1);
    admin
        .refused(&["jobs", "retry", &retried[0].to_string()], "is queued: only a failed job")
        .await;
    let out = admin.ok(&["jobs", "list"]).await;
    assert!(out.contains("3 jobs"), "{out}");

    // Statistics: text, and one JSON object.
    let out = admin.ok(&["stats"]).await;
    assert!(out.contains("users: 1 total") && out.contains("1 waiting"), "{out}");
    let out = admin.ok(&["stats", "--json"]).await;
    let json: serde_json::Value = serde_json::from_str(out.trim()).expect("stats --json is JSON");
    assert_eq!(json["queue"]["queued"], 1, "{json}");
    assert_eq!(json["queue"]["failed"], 1, "{json}");
    assert_eq!(json["queue"]["cancelled"], 1, "{json}");
    assert_eq!(json["daily"]["users_total"], 1, "{json}");
    assert!(json["purchases"].is_array(), "{json}");
    assert!(json["since"].is_string(), "{json}");

    keys_scenario(admin, stores).await;

    // Bad input: refused with a sentence, nothing written.
    admin
        .refused(&["grant", "77001", "-5"], "refused: a grant adds 1..=100000 credits (got -5)")
        .await;
    admin.refused(&["grant", "77001", "0"], "refused: a grant adds").await;
    admin.refused(&["grant", "424242", "5"], "user 424242 not found").await;
    admin.refused(&["balance", "424242"], "user 424242 not found").await;
    admin.refused(&["jobs", "cancel", "987654321"], "job 987654321 not found").await;
    admin.refused(&["jobs", "retry", "987654321"], "job 987654321 not found").await;
    admin.refused(&["jobs", "list", "--state", "lost"], "invalid value 'lost'").await;
    admin.refused(&["grant", "77001"], "required").await;
    assert_eq!(stores.accounts.balance(user).await.expect("balance"), credits(3));
}

/// The KIE keys as the workers record them: health, an operator's unblock, balances recorded and
/// read fresh from KIE (the fake) with the environment's key.
async fn keys_scenario(admin: &Admin, stores: &Stores) {
    use neurocards_core::ports::{KeyOff, KeyOffKind};
    let out = admin.ok(&["keys", "health"]).await;
    assert!(out.contains("no KIE key has been used"), "{out}");
    let until = chrono::Utc::now() + chrono::Duration::hours(24);
    let blocked = KeyOff { kind: KeyOffKind::Blocked, until, class: ErrorClass::Billing };
    stores.keys.set_off("key-0a0a0a0a", blocked).await.expect("recorded");
    stores.keys.record_balance("key-0b0b0b0b", Ok(2500.0)).await.expect("recorded");

    let out = admin.ok(&["keys", "health"]).await;
    assert!(out.contains("key-0a0a0a0a: blocked until") && out.contains("(billing)"), "{out}");
    assert!(out.contains("key-0b0b0b0b: in rotation") && out.contains("2500 credits"), "{out}");
    let out = admin.ok(&["keys", "health", "--json"]).await;
    let json: serde_json::Value = serde_json::from_str(out.trim()).expect("keys health --json");
    assert_eq!(json[0]["state"], "blocked", "{json}");
    assert_eq!(json[0]["reason"], "billing", "{json}");
    let out = admin.ok(&["stats", "--json"]).await;
    let stats: serde_json::Value = serde_json::from_str(out.trim()).expect("stats --json");
    assert_eq!(stats["keys"][0]["state"], "blocked", "{stats}");

    admin.refused(&["keys", "unblock", "sk-live-1"], "is not a key id").await;
    admin.refused(&["keys", "unblock", "key-0c0c0c0c"], "no key key-0c0c0c0c").await;
    let out = admin.ok(&["keys", "unblock", "key-0a0a0a0a"]).await;
    assert!(out.contains("key-0a0a0a0a is back in rotation"), "{out}");
    assert!(stores.keys.keys().await.expect("listed").iter().all(|k| k.off.is_none()));
    let out = admin.ok(&["keys", "unblock"]).await;
    assert!(out.contains("0 were out"), "{out}");

    let out = admin.ok(&["keys", "balances"]).await;
    assert!(out.contains("key-0b0b0b0b: 2500.00 credits"), "{out}");
    assert!(out.contains("key-0a0a0a0a: no balance read yet"), "{out}");
    admin.refused(&["keys", "balances", "--refresh"], "no KIE key in this environment").await;
    let kie = neurocards_testkit::fake_kie::FakeKie::start().await;
    kie.set_credits(777.5);
    let mut with_key = Admin { env: admin.env.clone() };
    with_key.env.push(("KIE_API_KEY".to_owned(), "kie-admin-key".to_owned()));
    with_key.env.push(("KIE_BASE_URL".to_owned(), kie.base_url().to_string()));
    let out = with_key.ok(&["keys", "balances", "--refresh"]).await;
    let id = neurocards_core::kie::key_id(&neurocards_core::secret::Secret::new("kie-admin-key"));
    assert!(out.contains(&format!("{id}: 777.50 credits")), "{out}");
    assert!(!out.contains("kie-admin-key"), "the key itself is never printed: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_on_postgres() {
    let Some(db) = pg_database().await else { return };
    let admin = Admin::new("DATABASE_URL", db.url());
    let stores = neurocards_core::postgres::stores(&db.pool, QueueConfig::default());
    scenario(&admin, &stores).await;
    assert_invariants(&db.pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_on_the_embedded_store() {
    let data = TempSqlite::new().await;
    let admin = Admin::new("DATA_DIR", data.dir().to_string_lossy().into_owned());
    let stores = neurocards_core::sqlite::stores(&data.store, QueueConfig::default());
    scenario(&admin, &stores).await;
    assert_invariants_sqlite(&data.store).await;
}

#[tokio::test]
async fn admin_without_configuration_says_what_is_missing() {
    let admin = Admin { env: Vec::new() };
    let run = admin.run(&["stats"]).await;
    assert!(!run.ok);
    assert!(run.stderr.contains("BOT_TOKEN"), "{}", run.stderr);
}

#[tokio::test]
async fn every_binary_explains_its_commands() {
    let bins = [
        (admin_binary(), vec!["migrate", "grant", "balance", "stats", "jobs", "keys"]),
        (neurocards_testkit::bot_harness::bot_binary(), vec!["migrate", "copy-to-postgres"]),
        (neurocards_testkit::system::worker_binary(), vec!["migrate"]),
    ];
    for (bin, commands) in bins {
        let out = tokio::process::Command::new(&bin)
            .env_clear()
            .arg("--help")
            .output()
            .await
            .expect("run --help");
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}: {help}", bin.display());
        for command in commands {
            assert!(help.contains(command), "{} --help lacks {command}: {help}", bin.display());
        }
    }
    let out = tokio::process::Command::new(admin_binary())
        .env_clear()
        .args(["jobs", "--help"])
        .output()
        .await
        .expect("run jobs --help");
    let help = String::from_utf8_lossy(&out.stdout);
    for command in ["list", "retry", "cancel"] {
        assert!(help.contains(command), "jobs --help lacks {command}: {help}");
    }
}
