//! Scratch databases for the benchmarks: created on `DATABASE_URL`'s server, dropped afterwards.

use anyhow::Context as _;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions as _, Connection as _};
use std::future::Future;
use std::str::FromStr as _;

/// Creates a database named `<prefix>_<random hex>` on the server of `DATABASE_URL`, runs `run`
/// with its connect options, and drops it again (also when `run` failed) before returning
/// `run`'s result.
pub async fn with_scratch_database<T, F, Fut>(prefix: &str, run: F) -> anyhow::Result<T>
where
    F: FnOnce(PgConnectOptions) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let url = std::env::var("DATABASE_URL").context("DATABASE_URL is not set")?;
    let server = PgConnectOptions::from_str(&url).context("DATABASE_URL is not a postgres URL")?;
    let name = format!("{prefix}_{:08x}", uuid::Uuid::new_v4().as_u128() as u32);
    let mut admin = server.connect().await.context("connect to DATABASE_URL")?;
    // DDL takes no bind parameters; the name is ours (a fixed prefix and hex digits).
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await?;
    let result = run(server.clone().database(&name)).await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    result
}
