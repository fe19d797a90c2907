//! Opening the database and applying migrations, as the binaries do at start.

use neurocards_core::postgres::{connect, migrate, ConnectError};
use neurocards_testkit::stores::pg_database;
use sqlx::postgres::PgPoolOptions;

#[tokio::test]
async fn connect_then_migrate_an_up_to_date_database_is_a_no_op() {
    let Some(db) = pg_database().await else { return };
    // `DATABASE_URL` pointed at the test's own database, as a host would configure it.
    let pool = connect(&db.url(), 2).await.expect("connect");
    migrate(&pool).await.expect("migrations already applied: nothing to do");
    migrate(&pool).await.expect("and again");
    let timeout: String = sqlx::query_scalar("SHOW idle_in_transaction_session_timeout")
        .fetch_one(&pool)
        .await
        .expect("read setting");
    assert_eq!(timeout, "30s", "sessions cannot idle in a transaction for long");
}

#[tokio::test]
async fn a_malformed_url_is_reported_without_echoing_it() {
    let err = connect("postgres://user:secret@[bad", 1).await.expect_err("refused");
    assert!(matches!(err, ConnectError::InvalidUrl(_)));
    assert!(!err.to_string().contains("secret"));
}

#[tokio::test]
async fn a_connection_the_server_closed_fails_once_and_is_replaced() {
    let Some(db) = pg_database().await else { return };
    let pool_opts = PgPoolOptions::new();
    let opts = db.connect_options();
    let pool = connect(&db.url(), 1).await.expect("connect");
    let pid: i32 =
        sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&pool).await.expect("first use");

    // The server ends the pool's only connection (a restart, an admin, a network cut).
    let admin = pool_opts.max_connections(1).connect_with(opts).await.expect("admin connection");
    let ended: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&admin)
        .await
        .expect("terminate");
    assert!(ended);
    for _ in 0..500 {
        let alive: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = $1")
            .bind(pid)
            .fetch_one(&admin)
            .await
            .expect("read activity");
        if alive == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }

    // Without a ping before each use, the next query is the one that finds out; it fails with
    // an error the caller handles, and the pool opens a new connection for the one after.
    let mut outcomes = Vec::new();
    for _ in 0..2 {
        outcomes
            .push(sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()").fetch_one(&pool).await);
    }
    assert!(outcomes[0].is_err(), "the closed connection's next query fails: {outcomes:?}");
    let next = outcomes[1].as_ref().expect("the query after it runs on a new connection");
    assert_ne!(*next, pid);
}
