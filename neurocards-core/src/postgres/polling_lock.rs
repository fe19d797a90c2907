//! "Only one process polls Telegram at a time": a PostgreSQL session advisory lock held on a
//! dedicated connection for as long as the process polls. If the process dies, its connection
//! closes and the lock is free for a standby.

use sqlx::{Connection, PgConnection, PgPool};
use std::future::Future;
use std::time::Duration;

/// The advisory lock key of the Telegram poller ("ncpoll" in ASCII).
pub const POLLING_LOCK_KEY: i64 = 0x6e63_706f_6c6c;

/// How long [`PollingLock::is_held`] waits for the lock's connection to answer.
pub const HELD_CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// The held polling lock. Dropping it closes its connection, which releases the lock.
#[derive(Debug)]
pub struct PollingLock {
    conn: PgConnection,
}

impl PollingLock {
    /// Takes the lock if it is free; `None` when another process holds it.
    pub async fn try_acquire(pool: &PgPool) -> Result<Option<Self>, sqlx::Error> {
        // Detached: a session lock must never go back into the pool with its connection.
        let mut conn = pool.acquire().await?.detach();
        let (taken,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock($1)")
            .bind(POLLING_LOCK_KEY)
            .fetch_one(&mut conn)
            .await?;
        Ok(taken.then_some(Self { conn }))
    }

    /// Waits for the lock, trying every `retry_every`; `None` when `stop` completes first.
    /// Database errors while waiting are logged and retried.
    pub async fn acquire(
        pool: &PgPool,
        retry_every: Duration,
        stop: impl Future<Output = ()>,
    ) -> Option<Self> {
        tokio::pin!(stop);
        let mut announced = false;
        loop {
            match Self::try_acquire(pool).await {
                Ok(Some(lock)) => return Some(lock),
                Ok(None) if !announced => {
                    tracing::info!("another process is polling Telegram; standing by");
                    announced = true;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "polling lock unavailable; retrying"),
            }
            tokio::select! {
                _ = &mut stop => return None,
                _ = tokio::time::sleep(retry_every) => {}
            }
        }
    }

    /// Whether the lock's connection is still alive (and so the lock still held). A server
    /// restart or failover drops the connection and with it the lock: the holder must stop
    /// polling and [`PollingLock::acquire`] again (another process may have taken it meanwhile).
    /// A connection that does not answer within [`HELD_CHECK_TIMEOUT`] (a broken network)
    /// counts as lost.
    pub async fn is_held(&mut self) -> bool {
        matches!(tokio::time::timeout(HELD_CHECK_TIMEOUT, self.conn.ping()).await, Ok(Ok(())))
    }

    /// Releases the lock now (closing its connection, for at most a few seconds; a server
    /// that does not answer frees the lock when it drops the connection).
    pub async fn release(self) {
        let _ = tokio::time::timeout(HELD_CHECK_TIMEOUT, self.conn.close()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_one_holder_until_released() {
        let Some(db) = crate::postgres::test_db::test_database().await else { return };
        let pool = db.pool.clone();
        let mut first = PollingLock::try_acquire(&pool).await.expect("db").expect("free lock");
        assert!(PollingLock::try_acquire(&pool).await.expect("db").is_none());
        assert!(first.is_held().await);
        first.release().await;
        let second = PollingLock::acquire(&pool, Duration::from_millis(20), std::future::pending())
            .await
            .expect("acquired after release");
        drop(second);
        let stopped = PollingLock::acquire(&pool, Duration::from_millis(20), async {}).await;
        assert!(stopped.is_some(), "a free lock is taken before checking stop");
    }

    #[tokio::test]
    async fn a_dropped_connection_loses_the_lock_and_it_can_be_taken_again() {
        let Some(db) = crate::postgres::test_db::test_database().await else { return };
        let pool = db.pool.clone();
        let mut held = PollingLock::try_acquire(&pool).await.expect("db").expect("free lock");
        // What a server restart does to the holder's connection.
        let mut admin =
            PgConnection::connect_with(&pool.connect_options()).await.expect("admin connection");
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .execute(&mut admin)
        .await
        .expect("terminate backends");
        assert!(!held.is_held().await, "the lock went with its connection");
        held.release().await;
        crate::postgres::discard_dead_idle(&pool).await;
        let again = PollingLock::acquire(&pool, Duration::from_millis(20), std::future::pending())
            .await
            .expect("the lock is free again");
        assert!(PollingLock::try_acquire(&pool).await.expect("db").is_none(), "and held once");
        drop(again);
    }
}
