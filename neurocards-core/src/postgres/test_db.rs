//! Scratch PostgreSQL databases for this crate's own tests.
//!
//! Without `DATABASE_URL` the PostgreSQL tests return early after one line on the terminal;
//! with `NEUROCARDS_REQUIRE_POSTGRES=1` (set by CI) a missing `DATABASE_URL` fails them
//! instead. Each test gets a fresh database with the migrations applied, dropped (with every
//! connection still open on it) when the [`TestDb`] is dropped — also after a panic.

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions as _, Connection as _, PgPool};
use std::io::Write as _;
use std::str::FromStr as _;
use std::sync::Once;

/// Set to `1` to make a missing `DATABASE_URL` fail the PostgreSQL tests instead of skipping
/// them.
const REQUIRE_POSTGRES_VAR: &str = "NEUROCARDS_REQUIRE_POSTGRES";

/// A migrated database of a test's own, dropped when this value is dropped.
#[derive(Debug)]
pub(crate) struct TestDb {
    pub(crate) pool: PgPool,
    server: PgConnectOptions,
    name: String,
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Marks the pool closed at once; its connections (some may still be held by the test's
        // tasks) end with the database below, so nothing here waits for them.
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

/// A fresh migrated database, or `None` (after the skip line, once per test binary) when
/// `DATABASE_URL` is not set. Panics when it is not set but [`REQUIRE_POSTGRES_VAR`] is `1`.
pub(crate) async fn test_database() -> Option<TestDb> {
    let url = std::env::var("DATABASE_URL").unwrap_or_default();
    if url.trim().is_empty() {
        if std::env::var(REQUIRE_POSTGRES_VAR).is_ok_and(|v| v == "1") {
            panic!(
                "DATABASE_URL is not set but {REQUIRE_POSTGRES_VAR}=1: the PostgreSQL tests \
                 must run"
            );
        }
        static ANNOUNCED: Once = Once::new();
        ANNOUNCED.call_once(|| {
            // Written to the terminal directly: the test harness captures `eprintln!` of
            // passing tests, and this line must be seen.
            let _ = writeln!(
                std::io::stderr(),
                "note: DATABASE_URL is not set; the PostgreSQL tests of neurocards-core are \
                 skipped"
            );
        });
        return None;
    }
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
    let db = TestDb { pool, server, name };
    super::migrate(&db.pool).await.expect("migrate the test database");
    Some(db)
}
