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
/// 4. no job is both terminal and leased, and every running job holds a lease;
/// 5. payments (see [`PAYMENT_CHECKS`]): one row per provider charge; each credited charge has
///    exactly one `purchase` entry of its credits for its payer and a flagged charge none; a
///    refunded charge has exactly one `purchase_refund` entry (of at most its credits) and
///    no other charge has one; at most one `referral` entry per referred user, paid to their
///    referrer and recorded on their referral.
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

    for check in PAYMENT_CHECKS {
        let rows: Vec<(i64, String)> = sqlx::query_as(check.sql).fetch_all(pool).await?;
        found.extend(check.violations(rows));
    }

    Ok(found)
}

/// One payment invariant: a query, written the same for both stores, whose every row
/// (a key and a detail) breaks it.
#[derive(Debug)]
pub struct PaymentCheck {
    /// What must hold.
    pub rule: &'static str,
    pub sql: &'static str,
}

impl PaymentCheck {
    fn violations(&self, rows: Vec<(i64, String)>) -> impl Iterator<Item = Violation> + '_ {
        rows.into_iter()
            .map(move |(key, detail)| Violation(format!("{} — {key}: {detail}", self.rule)))
    }
}

/// The payment invariants, checked on both stores.
pub const PAYMENT_CHECKS: &[PaymentCheck] = &[
    PaymentCheck {
        rule: "one row per (rail, charge_id)",
        sql: "SELECT min(id), rail || ' ' || charge_id || ' has ' || CAST(count(*) AS TEXT)               || ' rows' FROM payment_charges GROUP BY rail, charge_id HAVING count(*) > 1               ORDER BY min(id)",
    },
    PaymentCheck {
        rule: "a credited charge has one purchase entry of its credits, a flagged one none",
        sql: "SELECT c.id, coalesce(c.mismatch, 'credited') || ' charge of '                      || CAST(c.credits AS TEXT) || ' credits with '                      || CAST(count(l.id) AS TEXT) || ' purchase entries summing to '                      || CAST(coalesce(sum(l.delta), 0) AS TEXT)               FROM payment_charges c               LEFT JOIN ledger l ON l.payment_id = c.id AND l.reason = 'purchase'               GROUP BY c.id, c.credits, c.mismatch               HAVING (c.mismatch IS NULL                       AND (count(l.id) <> 1 OR coalesce(sum(l.delta), 0) <> c.credits))                   OR (c.mismatch IS NOT NULL AND count(l.id) <> 0)               ORDER BY c.id",
    },
    PaymentCheck {
        rule: "a refunded charge has one purchase_refund entry of at most its credits, others none",
        sql: "SELECT c.id, CASE WHEN c.refunded_at IS NULL THEN 'not refunded'                                 ELSE 'refunded' END                      || ' charge of ' || CAST(c.credits AS TEXT) || ' credits with '                      || CAST(count(l.id) AS TEXT) || ' purchase_refund entries taking '                      || CAST(coalesce(-sum(l.delta), 0) AS TEXT)               FROM payment_charges c               LEFT JOIN ledger l ON l.payment_id = c.id AND l.reason = 'purchase_refund'               GROUP BY c.id, c.credits, c.refunded_at               HAVING (c.refunded_at IS NULL AND count(l.id) <> 0)                   OR (c.refunded_at IS NOT NULL AND count(l.id) <> 1)                   OR coalesce(-sum(l.delta), 0) > c.credits               ORDER BY c.id",
    },
    PaymentCheck {
        rule: "at most one referral entry per referred user",
        sql: "SELECT c.user_id, CAST(count(l.id) AS TEXT) || ' referral entries'               FROM ledger l JOIN payment_charges c ON c.id = l.payment_id               WHERE l.reason = 'referral'               GROUP BY c.user_id HAVING count(l.id) > 1 ORDER BY c.user_id",
    },
    PaymentCheck {
        rule: "a payment entry belongs to its payer (or, for a bonus, their recorded referrer)",
        sql: "SELECT l.id, l.reason || ' entry of user ' || CAST(l.user_id AS TEXT)                      || ' for the charge ' || CAST(c.id AS TEXT) || ' of user '                      || CAST(c.user_id AS TEXT)               FROM ledger l JOIN payment_charges c ON c.id = l.payment_id               LEFT JOIN referrals r ON r.user_id = c.user_id               WHERE (l.reason IN ('purchase', 'purchase_refund') AND l.user_id <> c.user_id)                  OR (l.reason = 'referral'                      AND (r.user_id IS NULL OR r.referrer_id <> l.user_id                           OR r.bonus_charge_id IS NULL OR r.bonus_charge_id <> l.payment_id))               ORDER BY l.id",
    },
    PaymentCheck {
        rule: "a referral marked paid has its referral entry",
        sql: "SELECT r.user_id, 'bonus charge ' || CAST(r.bonus_charge_id AS TEXT)                      || ' has no referral entry'               FROM referrals r               LEFT JOIN ledger l ON l.payment_id = r.bonus_charge_id AND l.reason = 'referral'               WHERE r.bonus_charge_id IS NOT NULL AND l.id IS NULL               ORDER BY r.user_id",
    },
];

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

    for check in PAYMENT_CHECKS {
        let rows: Vec<(i64, String)> = sqlx::query_as(check.sql).fetch_all(pool).await?;
        found.extend(check.violations(rows));
    }

    Ok(found)
}

/// [`assert_invariants`] on the embedded store: panics, listing every violation, when an
/// invariant does not hold (or the store cannot be read).
pub async fn assert_invariants_sqlite(store: &SqliteStore) {
    report(check_invariants_sqlite(store).await);
}
