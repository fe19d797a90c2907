//! The two stores for tests: a fresh embedded store in a temporary directory, and a fresh
//! PostgreSQL database on `DATABASE_URL`'s server.
//!
//! PostgreSQL is optional on a developer's machine: without `DATABASE_URL`, [`pg_database`]
//! returns `None` and the test returns early, after one line on the terminal saying the
//! PostgreSQL suites are skipped. CI sets [`REQUIRE_POSTGRES_VAR`]`=1`, which turns any such
//! skip into a failure, so both stores always run there.

use neurocards_core::sqlite::SqliteStore;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions as _, Connection as _, PgPool};
use std::io::Write as _;
use std::path::PathBuf;
use std::str::FromStr as _;
use std::sync::Once;

/// Set to `1` to make a missing `DATABASE_URL` fail the PostgreSQL tests instead of skipping
/// them.
pub const REQUIRE_POSTGRES_VAR: &str = "NEUROCARDS_REQUIRE_POSTGRES";

/// A migrated embedded store in its own temporary directory, removed on drop.
#[derive(Debug)]
pub struct TempSqlite {
    pub store: SqliteStore,
    dir: PathBuf,
}

impl TempSqlite {
    /// Opens a fresh store in a new temporary directory.
    pub async fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("neurocards-test-{}", uuid::Uuid::new_v4()));
        let store = SqliteStore::open_in(&dir).await.expect("open the embedded store");
        Self { store, dir }
    }

    /// The directory holding the store's file (a bot's `DATA_DIR`).
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }
}

impl Drop for TempSqlite {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A migrated PostgreSQL database of its own, dropped (with its connections) when this value
/// is dropped — also when the test panicked.
#[derive(Debug)]
pub struct PgTestDb {
    pub pool: PgPool,
    server: PgConnectOptions,
    name: String,
}

impl PgTestDb {
    /// The connect options of this database (for processes or pools of a test's own).
    pub fn connect_options(&self) -> PgConnectOptions {
        self.server.clone().database(&self.name)
    }

    /// A `postgres://` URL of this database, for child processes.
    pub fn url(&self) -> String {
        let base = std::env::var("DATABASE_URL").unwrap_or_default();
        let mut url = url::Url::parse(&base).expect("DATABASE_URL parses");
        url.set_path(&format!("/{}", self.name));
        url.to_string()
    }
}

impl Drop for PgTestDb {
    fn drop(&mut self) {
        // Marks the pool closed at once. Its connections (a test's tasks or child processes may
        // still hold some) end with the database below: waiting for them to be returned could
        // wait forever, on a runtime this drop is blocking.
        drop(self.pool.close());
        let server = self.server.clone();
        let name = self.name.clone();
        // Drop runs outside async; a thread with its own runtime drops the database.
        let dropped = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut admin) = server.connect().await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut admin)
                        .await;
                    let _ = admin.close().await;
                }
            });
        });
        let _ = dropped.join();
    }
}

/// Whether the PostgreSQL tests can run; prints the skip line (once per test binary) when
/// they cannot, and panics instead when [`REQUIRE_POSTGRES_VAR`] is set.
pub fn postgres_available() -> bool {
    if std::env::var("DATABASE_URL").is_ok_and(|u| !u.trim().is_empty()) {
        return true;
    }
    if std::env::var(REQUIRE_POSTGRES_VAR).is_ok_and(|v| v == "1") {
        panic!(
            "DATABASE_URL is not set but {REQUIRE_POSTGRES_VAR}=1: the PostgreSQL tests must run"
        );
    }
    static ANNOUNCED: Once = Once::new();
    ANNOUNCED.call_once(|| {
        // Written to the terminal directly: the test harness captures `println!` of passing
        // tests, and this line must be seen.
        let _ = writeln!(
            std::io::stderr(),
            "note: DATABASE_URL is not set; the PostgreSQL tests of {} are skipped (the \
             embedded-store tests run)",
            std::env::args().next().unwrap_or_default()
        );
    });
    false
}

/// A fresh database with the PostgreSQL migrations applied, or `None` (after the skip line)
/// when `DATABASE_URL` is not set.
pub async fn pg_database() -> Option<PgTestDb> {
    let db = pg_empty_database().await?;
    neurocards_core::postgres::migrate(&db.pool).await.expect("migrate the test database");
    Some(db)
}

/// A fresh database with no migrations applied (for tests of the migrations themselves), or
/// `None` (after the skip line) when `DATABASE_URL` is not set.
pub async fn pg_empty_database() -> Option<PgTestDb> {
    if !postgres_available() {
        return None;
    }
    let url = std::env::var("DATABASE_URL").expect("checked above");
    let server = PgConnectOptions::from_str(&url).expect("DATABASE_URL is a postgres:// URL");
    let name = format!("nctest_{:016x}", uuid::Uuid::new_v4().as_u128() as u64);
    let mut admin = server.connect().await.expect("connect to DATABASE_URL");
    // DDL takes no bind parameters; the name is ours (a fixed prefix and hex digits).
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("create a test database");
    let _ = admin.close().await;
    // From here on, a failure drops the database again.
    let pool =
        PgPoolOptions::new().max_connections(10).connect_lazy_with(server.clone().database(&name));
    Some(PgTestDb { pool, server, name })
}

/// Declares PostgreSQL tests that skip without `DATABASE_URL` (see [`pg_database`]). Each body
/// sees `pool: PgPool` on a fresh migrated database of its own:
///
/// ```ignore
/// pg_test! {
///     async fn balance_is_kept(pool) { /* … */ }
/// }
/// ```
#[macro_export]
macro_rules! pg_test {
    ($( $(#[$meta:meta])* async fn $name:ident($pool:ident) $body:block )*) => {$(
        $(#[$meta])*
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let Some(__db) = $crate::stores::pg_database().await else { return };
            #[allow(unused_variables)]
            let $pool: ::sqlx::PgPool = __db.pool.clone();
            $body
        }
    )*};
}

/// The store a store-neutral test runs on. The test keeps the guard that owns it (a
/// [`TempSqlite`] or [`PgTestDb`]) alive; this is the handle the harnesses take.
#[derive(Debug, Clone)]
pub enum StoreUnderTest {
    Postgres(PgPool),
    Sqlite(SqliteStore),
}

impl From<PgPool> for StoreUnderTest {
    fn from(pool: PgPool) -> Self {
        Self::Postgres(pool)
    }
}

impl From<SqliteStore> for StoreUnderTest {
    fn from(store: SqliteStore) -> Self {
        Self::Sqlite(store)
    }
}

impl StoreUnderTest {
    /// The store as the binaries open it.
    pub fn opened(&self) -> neurocards_core::wiring::OpenedStore {
        match self {
            Self::Postgres(pool) => neurocards_core::wiring::OpenedStore::Postgres(pool.clone()),
            Self::Sqlite(store) => neurocards_core::wiring::OpenedStore::Sqlite(store.clone()),
        }
    }

    /// Every storage port on this store (adapters built from clones of one embedded store
    /// share its in-process wake-ups).
    pub fn stores(
        &self,
        config: neurocards_core::queue_config::QueueConfig,
    ) -> neurocards_core::stores::Stores {
        self.opened().stores(config)
    }

    /// The bot's own storage ports on this store.
    pub fn bot_stores(&self) -> neurocards_core::stores::BotStores {
        self.opened().bot_stores()
    }

    /// The PostgreSQL pool; panics on the embedded store (for tests of PostgreSQL facts).
    pub fn pg_pool(&self) -> &PgPool {
        match self {
            Self::Postgres(pool) => pool,
            Self::Sqlite(_) => panic!("this test reads PostgreSQL directly: run it on PostgreSQL"),
        }
    }

    /// `postgres` or `sqlite`, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "postgres",
            Self::Sqlite(_) => "sqlite",
        }
    }

    /// The environment naming this store for a child process: `DATABASE_URL` for PostgreSQL,
    /// `DATA_DIR` (and no `DATABASE_URL`) for the embedded store.
    pub fn process_env(&self) -> Vec<(String, String)> {
        match self {
            Self::Postgres(pool) => {
                vec![("DATABASE_URL".to_owned(), crate::system::database_url(pool))]
            }
            Self::Sqlite(store) => {
                let dir = store.path().parent().map(|d| d.to_string_lossy().into_owned());
                vec![("DATA_DIR".to_owned(), dir.unwrap_or_else(|| ".".to_owned()))]
            }
        }
    }

    /// Checks the database invariants (panics listing violations).
    pub async fn assert_invariants(&self) {
        match self {
            Self::Postgres(pool) => crate::invariants::assert_invariants(pool).await,
            Self::Sqlite(store) => crate::invariants::assert_invariants_sqlite(store).await,
        }
    }

    /// Jobs in `state`, across the whole store.
    pub async fn jobs_in(&self, state: &str) -> i64 {
        match self {
            Self::Postgres(pool) => {
                sqlx::query_scalar("SELECT count(*) FROM jobs WHERE state = $1")
                    .bind(state)
                    .fetch_one(pool)
                    .await
            }
            Self::Sqlite(store) => {
                sqlx::query_scalar("SELECT count(*) FROM jobs WHERE state = ?")
                    .bind(state)
                    .fetch_one(store.reader())
                    .await
            }
        }
        .expect("count jobs")
    }

    /// Jobs by state, across the whole store.
    pub async fn status_counts(&self) -> std::collections::HashMap<String, i64> {
        let rows: Vec<(String, i64)> = match self {
            Self::Postgres(pool) => {
                sqlx::query_as("SELECT state::text, count(*) FROM jobs GROUP BY state")
                    .fetch_all(pool)
                    .await
            }
            Self::Sqlite(store) => {
                sqlx::query_as("SELECT state, count(*) FROM jobs GROUP BY state")
                    .fetch_all(store.reader())
                    .await
            }
        }
        .expect("count jobs");
        rows.into_iter().collect()
    }

    /// The rows of `sql`, a statement without bind parameters written the same in both SQL
    /// dialects (values as literals). Read on the embedded store's read-only pool.
    pub async fn rows<T>(&self, sql: &str) -> Vec<T>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
            + for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
            + Send
            + Unpin,
    {
        match self {
            Self::Postgres(pool) => sqlx::query_as(sql).fetch_all(pool).await,
            Self::Sqlite(store) => sqlx::query_as(sql).fetch_all(store.reader()).await,
        }
        .unwrap_or_else(|e| panic!("{sql} on {}: {e}", self.name()))
    }

    /// The one row of `sql` (see [`StoreUnderTest::rows`]); panics unless there is exactly one.
    pub async fn row<T>(&self, sql: &str) -> T
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
            + for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
            + Send
            + Unpin,
    {
        let mut rows = self.rows::<T>(sql).await;
        assert_eq!(rows.len(), 1, "{sql} on {}: expected one row", self.name());
        rows.remove(0)
    }

    /// Runs `sql`, a write without bind parameters written the same in both SQL dialects
    /// (booleans as `true`/`false`, which the embedded store reads as 1/0), on the embedded
    /// store's writer; returns the rows affected.
    pub async fn execute(&self, sql: &str) -> u64 {
        match self {
            Self::Postgres(pool) => sqlx::query(sql).execute(pool).await.map(|r| r.rows_affected()),
            Self::Sqlite(store) => {
                sqlx::query(sql).execute(store.writer()).await.map(|r| r.rows_affected())
            }
        }
        .unwrap_or_else(|e| panic!("{sql} on {}: {e}", self.name()))
    }

    /// The job whose recorded provider task is `task_id`.
    pub async fn job_of_task(&self, task_id: &str) -> Option<i64> {
        match self {
            Self::Postgres(pool) => {
                sqlx::query_scalar("SELECT id FROM jobs WHERE provider_task_id = $1")
                    .bind(task_id)
                    .fetch_optional(pool)
                    .await
            }
            Self::Sqlite(store) => {
                sqlx::query_scalar("SELECT id FROM jobs WHERE provider_task_id = ?")
                    .bind(task_id)
                    .fetch_optional(store.reader())
                    .await
            }
        }
        .expect("find the job of the task")
    }
}

/// Declares store-neutral tests run on both stores: each `async fn name(store) { … }` becomes
/// a module `name` with the tests `sqlite` (always) and `postgres` (skipped without
/// `DATABASE_URL`, see [`pg_database`]). The body sees `store: StoreUnderTest`.
#[macro_export]
macro_rules! both_stores {
    ($( $(#[$meta:meta])* async fn $name:ident($store:ident) $body:block )*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            $(#[$meta])*
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let __guard = $crate::stores::TempSqlite::new().await;
                #[allow(unused_variables)]
                let $store = $crate::stores::StoreUnderTest::Sqlite(__guard.store.clone());
                $body
            }

            $(#[$meta])*
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(__guard) = $crate::stores::pg_database().await else { return };
                #[allow(unused_variables)]
                let $store = $crate::stores::StoreUnderTest::Postgres(__guard.pool.clone());
                $body
            }
        }
    )*};
}
