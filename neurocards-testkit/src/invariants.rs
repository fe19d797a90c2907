//! The invariants of DESIGN.md, checked against the database. Any test — unit, end-to-end,
//! chaos — can call [`assert_invariants`] (PostgreSQL) or [`assert_invariants_sqlite`] (the
//! embedded store) at its end.

use neurocards_core::sqlite::SqliteStore;
use sqlx::PgPool;

/// One broken invariant, with enough detail to find the rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation(pub String);

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks, without panicking:
/// 1. per user, the cached balance equals the sum of their ledger entries, and is ≥ 0;
/// 2. every failed or cancelled job has exactly one refund, and no other job has any;
/// 3. every job charged: an order's charge equals its count × price;
/// 4. no job is both terminal and leased, and every running job holds a lease.
///
/// Returns the violations found (empty when all hold); a database error is returned as is.
pub async fn check_invariants(pool: &PgPool) -> Result<Vec<Violation>, sqlx::Error> {
    let mut found = Vec::new();

    let balances: Vec<(i64, i64, i64)> = sqlx::query_as(
        "SELECT u.id, u.balance, coalesce(sum(l.delta), 0)::bigint \
         FROM users u LEFT JOIN ledger l ON l.user_id = u.id \
         GROUP BY u.id, u.balance \
         HAVING u.balance <> coalesce(sum(l.delta), 0) OR coalesce(sum(l.delta), 0) < 0 \
         ORDER BY u.id",
    )
    .fetch_all(pool)
    .await?;
    for (user, cached, sum) in balances {
        found.push(Violation(format!(
            "user {user}: balance {cached} but ledger sums to {sum} (must be equal and >= 0)"
        )));
    }

    let refunds: Vec<(i64, String, i64)> = sqlx::query_as(
        "SELECT j.id, j.state, count(l.id) FROM jobs j \
         LEFT JOIN ledger l ON l.job_id = j.id AND l.reason = 'refund' \
         GROUP BY j.id, j.state \
         HAVING (j.state IN ('failed', 'cancelled') AND count(l.id) <> 1) \
             OR (j.state NOT IN ('failed', 'cancelled') AND count(l.id) <> 0) \
         ORDER BY j.id",
    )
    .fetch_all(pool)
    .await?;
    for (job, state, n) in refunds {
        found.push(Violation(format!("job {job}: state {state} with {n} refunds")));
    }

    let orphan_refunds: Vec<(i64, Option<i64>)> = sqlx::query_as(
        "SELECT l.id, l.job_id FROM ledger l LEFT JOIN jobs j ON j.id = l.job_id \
         WHERE l.reason = 'refund' AND j.id IS NULL ORDER BY l.id",
    )
    .fetch_all(pool)
    .await?;
    for (entry, job) in orphan_refunds {
        found.push(Violation(format!("ledger entry {entry}: refund for missing job {job:?}")));
    }

    let charges: Vec<(i64, i64, i64)> = sqlx::query_as(
        "SELECT o.id, (o.count * o.price_per_video)::bigint, \
                coalesce(-sum(l.delta), 0)::bigint \
         FROM orders o LEFT JOIN ledger l ON l.order_id = o.id AND l.reason = 'charge' \
         GROUP BY o.id, o.count, o.price_per_video \
         HAVING count(l.id) <> 1 OR coalesce(-sum(l.delta), 0) <> o.count * o.price_per_video \
         ORDER BY o.id",
    )
    .fetch_all(pool)
    .await?;
    for (order, price, charged) in charges {
        found.push(Violation(format!(
            "order {order}: costs {price} but was charged {charged} (exactly one charge expected)"
        )));
    }

    let leases: Vec<(i64, String, Option<String>)> = sqlx::query_as(
        "SELECT id, state, leased_by FROM jobs \
         WHERE (state IN ('succeeded', 'failed', 'cancelled') \
                AND (leased_by IS NOT NULL OR lease_expires_at IS NOT NULL)) \
            OR (state = 'running' AND (leased_by IS NULL OR lease_expires_at IS NULL)) \
            OR (state IN ('succeeded', 'failed', 'cancelled') AND finished_at IS NULL) \
         ORDER BY id",
    )
    .fetch_all(pool)
    .await?;
    for (job, state, by) in leases {
        found.push(Violation(format!("job {job}: state {state}, leased by {by:?}")));
    }

    Ok(found)
}

/// Panics, listing every violation, when an invariant does not hold (or the database cannot
/// be read).
pub async fn assert_invariants(pool: &PgPool) {
    report(check_invariants(pool).await);
}

/// Panics with every violation found, or with the error that kept them from being checked.
fn report(checked: Result<Vec<Violation>, sqlx::Error>) {
    match checked {
        Ok(v) if v.is_empty() => {}
        Ok(v) => {
            let list: Vec<String> = v.iter().map(|x| format!("  - {x}")).collect();
            panic!("{} invariant violation(s):\n{}", v.len(), list.join("\n"));
        }
        Err(e) => panic!("cannot check invariants: {e}"),
    }
}

/// [`check_invariants`] on the embedded store: the same checks in SQLite's SQL, read through the
/// store's read-only connections.
pub async fn check_invariants_sqlite(store: &SqliteStore) -> Result<Vec<Violation>, sqlx::Error> {
    let pool = store.reader();
    let mut found = Vec::new();

    let balances: Vec<(i64, i64, i64)> = sqlx::query_as(
        "SELECT u.id, u.balance, coalesce(sum(l.delta), 0) \
         FROM users u LEFT JOIN ledger l ON l.user_id = u.id \
         GROUP BY u.id, u.balance \
         HAVING u.balance <> coalesce(sum(l.delta), 0) OR coalesce(sum(l.delta), 0) < 0 \
         ORDER BY u.id",
    )
    .fetch_all(pool)
    .await?;
    for (user, cached, sum) in balances {
        found.push(Violation(format!(
            "user {user}: balance {cached} but ledger sums to {sum} (must be equal and >= 0)"
        )));
    }

    let refunds: Vec<(i64, String, i64)> = sqlx::query_as(
        "SELECT j.id, j.state, count(l.id) FROM jobs j \
         LEFT JOIN ledger l ON l.job_id = j.id AND l.reason = 'refund' \
         GROUP BY j.id, j.state \
         HAVING (j.state IN ('failed', 'cancelled') AND count(l.id) <> 1) \
             OR (j.state NOT IN ('failed', 'cancelled') AND count(l.id) <> 0) \
         ORDER BY j.id",
    )
    .fetch_all(pool)
    .await?;
    for (job, state, n) in refunds {
        found.push(Violation(format!("job {job}: state {state} with {n} refunds")));
    }

    let orphan_refunds: Vec<(i64, Option<i64>)> = sqlx::query_as(
        "SELECT l.id, l.job_id FROM ledger l LEFT JOIN jobs j ON j.id = l.job_id \
         WHERE l.reason = 'refund' AND j.id IS NULL ORDER BY l.id",
    )
    .fetch_all(pool)
    .await?;
    for (entry, job) in orphan_refunds {
        found.push(Violation(format!("ledger entry {entry}: refund for missing job {job:?}")));
    }

    let charges: Vec<(i64, i64, i64)> = sqlx::query_as(
        "SELECT o.id, o.count * o.price_per_video, coalesce(-sum(l.delta), 0) \
         FROM orders o LEFT JOIN ledger l ON l.order_id = o.id AND l.reason = 'charge' \
         GROUP BY o.id, o.count, o.price_per_video \
         HAVING count(l.id) <> 1 OR coalesce(-sum(l.delta), 0) <> o.count * o.price_per_video \
         ORDER BY o.id",
    )
    .fetch_all(pool)
    .await?;
    for (order, price, charged) in charges {
        found.push(Violation(format!(
            "order {order}: costs {price} but was charged {charged} (exactly one charge expected)"
        )));
    }

    let leases: Vec<(i64, String, Option<String>)> = sqlx::query_as(
        "SELECT id, state, leased_by FROM jobs \
         WHERE (state IN ('succeeded', 'failed', 'cancelled') \
                AND (leased_by IS NOT NULL OR lease_expires_at IS NOT NULL)) \
            OR (state = 'running' AND (leased_by IS NULL OR lease_expires_at IS NULL)) \
            OR (state IN ('succeeded', 'failed', 'cancelled') AND finished_at IS NULL) \
         ORDER BY id",
    )
    .fetch_all(pool)
    .await?;
    for (job, state, by) in leases {
        found.push(Violation(format!("job {job}: state {state}, leased by {by:?}")));
    }

    Ok(found)
}

/// [`assert_invariants`] on the embedded store: panics, listing every violation, when an
/// invariant does not hold (or the store cannot be read).
pub async fn assert_invariants_sqlite(store: &SqliteStore) {
    report(check_invariants_sqlite(store).await);
}
