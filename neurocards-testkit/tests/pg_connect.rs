//! Opening the database and applying migrations, as the binaries do at start.

use neurocards_core::postgres::{connect, migrate, ConnectError};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

#[sqlx::test(migrations = "../migrations")]
async fn connect_then_migrate_an_up_to_date_database_is_a_no_op(
    _pool_opts: PgPoolOptions,
    opts: PgConnectOptions,
) {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL is set for tests");
    let mut url = url::Url::parse(&base).expect("DATABASE_URL is a URL");
    url.set_path(opts.get_database().expect("the test database has a name"));
    let pool = connect(url.as_str(), 2).await.expect("connect");
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
