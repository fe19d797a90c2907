//! After the server dropped every connection (a restart, a failover, an administrator
//! terminating backends) each idle pooled connection is dead, and the pool only finds out when
//! a caller's query fails on it — one failed query per pooled connection. Whoever notices a lost
//! connection first (the polling lock, a `LISTEN` connection) sweeps the pool with
//! [`discard_dead_idle`], so the callers after it get live connections.

use sqlx::{Connection, PgPool};

/// Pings every connection idle in `pool` and closes those that do not answer; returns how many
/// were closed. Connections in use are left alone (their own query reports the loss), and so
/// are connections opened meanwhile. Never fails: a sweep that cannot ping simply closes.
pub async fn discard_dead_idle(pool: &PgPool) -> usize {
    let mut alive = Vec::new();
    let mut closed = 0;
    // Each idle connection is taken at most once: the live ones are held until the sweep ends.
    for _ in 0..pool.num_idle() {
        let Some(mut conn) = pool.try_acquire() else { break };
        if conn.ping().await.is_ok() {
            alive.push(conn);
        } else {
            let _ = conn.close().await;
            closed += 1;
        }
    }
    drop(alive);
    if closed > 0 {
        tracing::info!(closed, "closed pooled database connections the server had dropped");
    }
    closed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[sqlx::test(migrations = "../migrations")]
    async fn a_sweep_after_the_server_dropped_connections_leaves_only_live_ones(pool: PgPool) {
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
