//! The payments migration on stores that already hold a shop: every ledger entry is kept as it
//! was (id, user, delta, reason, order, job, note, time), balances stay, new ids follow the
//! old ones, the ledger stays append-only with its old rules, and the new payment rules hold.

use neurocards_core::sqlite::SqliteStore;
use neurocards_testkit::stores::pg_empty_database;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use std::path::{Path, PathBuf};

/// The first migration that knows payments.
const PAYMENTS_MIGRATION: &str = "20261201000101_payments.sql";

/// One ledger entry as stored, times as text so both stores compare the same way.
type Entry = (i64, i64, i64, String, Option<i64>, Option<i64>, Option<String>, String);

/// A temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("neurocards-mig-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The migrations of `store` (`postgres` or `sqlite`) released before the payments one, copied
/// into `into`.
async fn migrations_before_payments(store: &str, into: &Path) -> Migrator {
    let all = Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations").join(store);
    std::fs::create_dir_all(into).expect("create the migrations directory");
    let mut copied = 0;
    for file in std::fs::read_dir(&all).expect("read the migrations") {
        let file = file.expect("a migration");
        let name = file.file_name().to_string_lossy().into_owned();
        if name.as_str() < PAYMENTS_MIGRATION {
            std::fs::copy(file.path(), into.join(&name)).expect("copy a migration");
            copied += 1;
        }
    }
    assert!(copied > 0, "older migrations of {store}");
    Migrator::new(into).await.expect("read the older migrations")
}

/// An old entry to write: user, delta, reason, order, job, note.
type OldEntry = (i64, i64, &'static str, Option<i64>, Option<i64>, &'static str);

/// The shop's history before payments: two users, every old kind of entry.
const HISTORY: &[OldEntry] = &[
    (1, 5, "welcome", None, None, "start credits"),
    (1, 4, "grant", None, None, "promo"),
    (1, -3, "charge", Some(7), None, "order"),
    (1, 1, "refund", Some(7), Some(70), "refund"),
    (2, 2, "welcome", None, None, "start credits"),
    (2, 0, "grant", None, None, "zero"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_ledger_survives_the_payments_migration() {
    let dir = TempDir::new();
    let file = dir.0.join("neurocards.db");
    let options = SqliteConnectOptions::new()
        .filename(&file)
        .create_if_missing(true)
        .foreign_keys(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal);
    let pool =
        SqlitePoolOptions::new().max_connections(1).connect_with(options).await.expect("open");
    migrations_before_payments("sqlite", &dir.0.join("older"))
        .await
        .run(&pool)
        .await
        .expect("the older migrations");
    sqlx::query("INSERT INTO users (id, username) VALUES (1, 'ann'), (2, 'bob')")
        .execute(&pool)
        .await
        .expect("users");
    for (i, (user, delta, reason, order, job, note)) in HISTORY.iter().enumerate() {
        sqlx::query(
            "INSERT INTO ledger (user_id, delta, reason, order_id, job_id, note, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .bind(user)
        .bind(delta)
        .bind(reason)
        .bind(order)
        .bind(job)
        .bind(note)
        .bind(1_764_547_200_000_i64 + i as i64)
        .execute(&pool)
        .await
        .expect("a ledger entry");
    }
    const SELECT: &str = "SELECT id, user_id, delta, reason, order_id, job_id, note, \
                          CAST(created_at AS TEXT) FROM ledger ORDER BY id";
    let before: Vec<Entry> = sqlx::query_as(SELECT).fetch_all(&pool).await.expect("ledger");
    let balances: Vec<(i64, i64)> = sqlx::query_as("SELECT id, balance FROM users ORDER BY id")
        .fetch_all(&pool)
        .await
        .expect("b");
    assert_eq!(balances, vec![(1, 7), (2, 2)]);
    pool.close().await;

    let store = SqliteStore::open(&file.to_string_lossy()).await.expect("migrate to payments");
    let w = store.writer();
    let after: Vec<Entry> = sqlx::query_as(SELECT).fetch_all(w).await.expect("ledger");
    assert_eq!(after, before, "every entry kept as it was");
    let unset: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger WHERE payment_id IS NOT NULL")
        .fetch_one(w)
        .await
        .expect("count");
    assert_eq!(unset, 0);
    let kept: Vec<(i64, i64)> =
        sqlx::query_as("SELECT id, balance FROM users ORDER BY id").fetch_all(w).await.expect("b");
    assert_eq!(kept, balances, "balances unchanged");
    let leftovers: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE name LIKE 'ledger_new%'")
            .fetch_one(w)
            .await
            .expect("schema");
    assert_eq!(leftovers, 0);

    // New entries follow the old ids and still move the balance.
    let max_before = before.iter().map(|e| e.0).max().unwrap_or(0);
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO ledger (user_id, delta, reason, note) VALUES (2, 1, 'grant', 'new') \
         RETURNING id",
    )
    .fetch_one(w)
    .await
    .expect("a new entry");
    assert!(id > max_before, "{id} follows {max_before}");
    let balance: i64 =
        sqlx::query_scalar("SELECT balance FROM users WHERE id = 2").fetch_one(w).await.expect("b");
    assert_eq!(balance, 3, "the balance trigger is back");

    // Old and new rules hold.
    for refused in [
        "UPDATE ledger SET delta = 100 WHERE id = 1",
        "DELETE FROM ledger WHERE id = 1",
        "INSERT INTO ledger (user_id, delta, reason) VALUES (1, 1, 'welcome')",
        "INSERT INTO ledger (user_id, delta, reason) VALUES (1, 1, 'charge')",
        "INSERT INTO ledger (user_id, delta, reason) VALUES (1, 1, 'refund')",
        "INSERT INTO ledger (user_id, delta, reason) VALUES (1, -1, 'grant')",
        "INSERT INTO ledger (user_id, delta, reason) VALUES (1, 1, 'purchase')",
        "INSERT INTO ledger (user_id, delta, reason) VALUES (1, 1, 'referral')",
        "INSERT INTO ledger (user_id, delta, reason) VALUES (1, -1, 'purchase_refund')",
        "INSERT INTO ledger (user_id, delta, reason) VALUES (1, 1, 'bonus')",
        "INSERT INTO ledger (user_id, delta, reason) VALUES (1, -100, 'charge')",
    ] {
        assert!(sqlx::query(refused).execute(w).await.is_err(), "{refused} must be refused");
    }
    let after_refusals: Vec<Entry> = sqlx::query_as(SELECT).fetch_all(w).await.expect("ledger");
    assert_eq!(after_refusals.len(), before.len() + 1, "nothing refused was written");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_ledger_survives_the_payments_migration() {
    let Some(db) = pg_empty_database().await else { return };
    let dir = TempDir::new();
    let pool = &db.pool;
    migrations_before_payments("postgres", &dir.0.join("older"))
        .await
        .run(pool)
        .await
        .expect("the older migrations");
    sqlx::query("INSERT INTO users (id, username) VALUES (1, 'ann'), (2, 'bob')")
        .execute(pool)
        .await
        .expect("users");
    for (i, (user, delta, reason, order, job, note)) in HISTORY.iter().enumerate() {
        sqlx::query(
            "INSERT INTO ledger (user_id, delta, reason, order_id, job_id, note, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, now() - make_interval(mins => $7))",
        )
        .bind(user)
        .bind(delta)
        .bind(reason)
        .bind(order)
        .bind(job)
        .bind(note)
        .bind(10 - i as i32)
        .execute(pool)
        .await
        .expect("a ledger entry");
    }
    const SELECT: &str = "SELECT id, user_id, delta, reason, order_id, job_id, note, \
                          created_at::text FROM ledger ORDER BY id";
    let before: Vec<Entry> = sqlx::query_as(SELECT).fetch_all(pool).await.expect("ledger");
    let balances: Vec<(i64, i64)> = sqlx::query_as("SELECT id, balance FROM users ORDER BY id")
        .fetch_all(pool)
        .await
        .expect("b");
    assert_eq!(balances, vec![(1, 7), (2, 2)]);

    neurocards_core::postgres::migrate(pool).await.expect("migrate to payments");
    let after: Vec<Entry> = sqlx::query_as(SELECT).fetch_all(pool).await.expect("ledger");
    assert_eq!(after, before, "every entry kept as it was");
    let kept: Vec<(i64, i64)> = sqlx::query_as("SELECT id, balance FROM users ORDER BY id")
        .fetch_all(pool)
        .await
        .expect("b");
    assert_eq!(kept, balances, "balances unchanged");
    let mut checks: Vec<String> = sqlx::query_scalar(
        "SELECT conname::text FROM pg_constraint \
         WHERE conrelid = 'ledger'::regclass AND contype = 'c' ORDER BY conname",
    )
    .fetch_all(pool)
    .await
    .expect("constraints");
    checks.sort();
    assert_eq!(
        checks,
        vec![
            "ledger_payment_entries_name_charge",
            "ledger_reason",
            "ledger_refund_names_job",
            "ledger_sign"
        ],
        "the old generated CHECKs are replaced by named ones"
    );

    let max_before = before.iter().map(|e| e.0).max().unwrap_or(0);
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO ledger (user_id, delta, reason, note) VALUES (2, 1, 'grant', 'new') \
         RETURNING id",
    )
    .fetch_one(pool)
    .await
    .expect("a new entry");
    assert!(id > max_before);
    let balance: i64 = sqlx::query_scalar("SELECT balance FROM users WHERE id = 2")
        .fetch_one(pool)
        .await
        .expect("balance");
    assert_eq!(balance, 3);

    for refused in [
        "UPDATE ledger SET delta = 100 WHERE id = 1",
        "DELETE FROM ledger WHERE id = 1",
        "INSERT INTO ledger (user_id, delta, reason) VALUES (1, 1, 'welcome')",
        "INSERT INTO ledger (user_id, delta, reason) VALUES (1, 1, 'charge')",
        "INSERT INTO ledger (user_id, delta, reason) VALUES (1, 1, 'refund')",
        "INSERT INTO ledger (user_id, delta, reason) VALUES (1, -1, 'grant')",
        "INSERT INTO ledger (user_id, delta, reason) VALUES (1, 1, 'purchase')",
        "INSERT INTO ledger (user_id, delta, reason) VALUES (1, 1, 'referral')",
        "INSERT INTO ledger (user_id, delta, reason) VALUES (1, -1, 'purchase_refund')",
        "INSERT INTO ledger (user_id, delta, reason) VALUES (1, 1, 'bonus')",
        "INSERT INTO ledger (user_id, delta, reason) VALUES (1, -100, 'charge')",
    ] {
        assert!(sqlx::query(refused).execute(pool).await.is_err(), "{refused} must be refused");
    }
    let after_refusals: Vec<Entry> = sqlx::query_as(SELECT).fetch_all(pool).await.expect("ledger");
    assert_eq!(after_refusals.len(), before.len() + 1, "nothing refused was written");
}
