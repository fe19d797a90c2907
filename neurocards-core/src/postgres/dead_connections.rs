//! After the server dropped every connection (a restart, a failover, an administrator
//! terminating backends) each idle pooled connection is dead, and the pool only finds out when
//! a caller's query fails on it — one failed query per pooled connection. Whoever notices a lost
//! connection first (the polling lock, a `LISTEN` connection) sweeps the pool with
//! [`discard_dead_idle`], so the callers after it get live connections.

use sqlx::{Connection, PgPool};
use std::time::Duration;

/// How long a pooled connection may take to answer the sweep's ping before it counts as dead
/// (a server behind a broken network never answers at all).
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Pings every connection idle in `pool` (all at once, each for at most two seconds) and closes
/// those that do not answer; returns how many were closed. Connections in use are left alone
/// (their own query reports the loss), and so are connections opened meanwhile. Never fails.
pub async fn discard_dead_idle(pool: &PgPool) -> usize {
    // Each idle connection is taken at most once: all are held until the sweep ends.
    let mut idle = Vec::new();
    for _ in 0..pool.num_idle() {
        match pool.try_acquire() {
            Some(conn) => idle.push(conn),
            None => break,
        }
    }
    let pinged = futures::future::join_all(idle.into_iter().map(|mut conn| async move {
        let alive = matches!(tokio::time::timeout(PING_TIMEOUT, conn.ping()).await, Ok(Ok(())));
        (conn, alive)
    }))
    .await;
    let mut closed = 0;
    for (conn, alive) in pinged {
        if alive {
            drop(conn);
        } else {
            // Out of the pool, its slot free at once; the socket is dropped without a goodbye
            // that a dead server would never read.
            drop(conn.detach());
            closed += 1;
        }
    }
    if closed > 0 {
        tracing::info!(closed, "closed pooled database connections the server had dropped");
    }
    closed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sweep_after_the_server_dropped_connections_leaves_only_live_ones() {
        let Some(db) = crate::postgres::test_db::test_database().await else { return };
        let pool = db.pool.clone();
        // Three idle connections in the pool.
        let held: Vec<_> = futures::future::join_all((0..3).map(|_| pool.acquire()))
            .await
            .into_iter()
            .collect::<Result<_, _>>()
            .expect("connections");
        drop(held);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(pool.num_idle() >= 3, "idle connections: {}", pool.num_idle());

        // What a server restart does to its clients, from a connection outside the pool.
        let mut admin = sqlx::PgConnection::connect_with(&pool.connect_options())
            .await
            .expect("admin connection");
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .execute(&mut admin)
        .await
        .expect("terminate backends");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;

        assert!(discard_dead_idle(&pool).await >= 3);
        // Every query after the sweep runs on a live connection.
        for _ in 0..8 {
            sqlx::query("SELECT 1").execute(&pool).await.expect("a live connection");
        }
        assert_eq!(discard_dead_idle(&pool).await, 0, "nothing left to close");
    }
}
