//! Moving a seller from the embedded store to PostgreSQL: every durable fact of the SQLite file
//! — users and their ledger, products, orders, jobs with their recorded steps, dialogue state,
//! purchases, payment charges, referrals, reconciliation cursors and broadcasts (an unfinished
//! one is resumed by the bot on PostgreSQL) — copied into an empty, migrated PostgreSQL database in one transaction, with the same ids.
//!
//! Balances are not copied as numbers: each ledger entry is inserted in order and the
//! database's own ledger trigger rebuilds every balance, so the destination proves
//! "balance = sum of the ledger" as it is filled. Short-lived rows (update claims, usage
//! counters, provider wake-ups, the KIE keys' budgets and states) are not copied.
//!
//! Stop the bot first: a job running while the copy is taken keeps its lease in the copy and is
//! rescued by the first worker once that lease has expired.

use crate::sqlite::SqliteStore;
use sqlx::{PgPool, Row as _};

/// How a column is carried across.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Int,
    Text,
    Bool,
    /// SQLite milliseconds → `timestamptz`.
    Time,
    /// SQLite TEXT → `jsonb`.
    Json,
    /// SQLite TEXT of 32 hex digits → `uuid`.
    Uuid,
}

use Kind::{Bool, Int, Json, Text, Time, Uuid};

/// One table: its name, its columns, and whether its id is an identity column whose sequence
/// must be moved past the copied ids.
struct Table {
    name: &'static str,
    columns: &'static [(&'static str, Kind)],
    identity: bool,
}

/// Parents before children, so that every foreign key finds its row.
const TABLES: &[Table] = &[
    Table {
        name: "users",
        columns: &[
            ("id", Int),
            ("username", Text),
            ("first_name", Text),
            ("language", Text),
            ("consent_at", Time),
            ("banned", Bool),
            ("ban_reason", Text),
            ("blocked_bot_at", Time),
            ("created_at", Time),
        ],
        identity: false,
    },
    // Before the ledger: payment entries name their charge.
    Table {
        name: "payment_charges",
        columns: &[
            ("id", Int),
            ("rail", Text),
            ("charge_id", Text),
            ("purchase_id", Uuid),
            ("user_id", Int),
            ("amount", Int),
            ("currency", Text),
            ("source", Text),
            ("credits", Int),
            ("mismatch", Text),
            ("refunded_at", Time),
            ("created_at", Time),
        ],
        identity: true,
    },
    Table {
        name: "ledger",
        columns: &[
            ("id", Int),
            ("user_id", Int),
            ("delta", Int),
            ("reason", Text),
            ("order_id", Int),
            ("job_id", Int),
            ("note", Text),
            ("created_at", Time),
            ("payment_id", Int),
        ],
        identity: true,
    },
    Table {
        name: "purchases",
        columns: &[
            ("id", Uuid),
            ("user_id", Int),
            ("rail", Text),
            ("pack", Text),
            ("credits", Int),
            ("amount", Int),
            ("currency", Text),
            ("status", Text),
            ("provider_payment_id", Text),
            ("confirmation_url", Text),
            ("created_at", Time),
            ("updated_at", Time),
        ],
        identity: false,
    },
    Table {
        name: "referrals",
        columns: &[
            ("user_id", Int),
            ("referrer_id", Int),
            ("created_at", Time),
            ("bonus_charge_id", Int),
        ],
        identity: false,
    },
    Table {
        name: "payment_cursors",
        columns: &[("rail", Text), ("position", Int)],
        identity: false,
    },
    Table {
        name: "products",
        columns: &[
            ("id", Int),
            ("user_id", Int),
            ("photo_file_id", Text),
            ("photo_mime", Text),
            ("marketplace_url", Text),
            ("description", Text),
            ("created_at", Time),
        ],
        identity: true,
    },
    Table {
        name: "orders",
        columns: &[
            ("id", Int),
            ("user_id", Int),
            ("order_key", Text),
            ("count", Int),
            ("price_per_video", Int),
            ("template", Text),
            ("product_id", Int),
            ("wishes", Text),
            ("user_prompt", Text),
            ("aspect", Text),
            ("duration_secs", Int),
            ("language", Text),
            ("model", Text),
            ("progress_chat_id", Int),
            ("progress_message_id", Int),
            ("progress_rank", Int),
            ("progress_claimed", Bool),
            ("created_at", Time),
        ],
        identity: true,
    },
    Table {
        name: "jobs",
        columns: &[
            ("id", Int),
            ("order_id", Int),
            ("user_id", Int),
            ("index_in_order", Int),
            ("state", Text),
            ("fair_rank", Int),
            ("run_at", Time),
            ("attempt", Int),
            ("temporary_retries", Int),
            ("rate_limit_retries", Int),
            ("rescues", Int),
            ("lease_token", Int),
            ("leased_by", Text),
            ("lease_expires_at", Time),
            ("image_url", Text),
            ("prompt", Text),
            ("provider_task_id", Text),
            ("provider_model", Text),
            ("provider_key_id", Text),
            ("provider_submitted_at", Time),
            ("video_url", Text),
            ("delivered_message_id", Int),
            ("delivered_file_id", Text),
            ("undeliverable_reason", Text),
            ("error_class", Text),
            ("error_message", Text),
            ("created_at", Time),
            ("first_claimed_at", Time),
            ("finished_at", Time),
            ("current_step", Text),
            ("step_seq", Int),
            ("blamed_rescues", Int),
        ],
        identity: true,
    },
    Table {
        name: "bot_dialogues",
        columns: &[("chat_id", Int), ("state", Json), ("updated_at", Time)],
        identity: false,
    },
    Table {
        name: "broadcasts",
        columns: &[
            ("id", Int),
            ("admin_chat", Int),
            ("language", Text),
            ("text", Text),
            ("cursor_user_id", Int),
            ("sent", Int),
            ("blocked", Int),
            ("failed", Int),
            ("created_at", Time),
            ("finished_at", Time),
        ],
        identity: true,
    },
];

/// Rows copied per table, in copy order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    pub tables: Vec<(&'static str, u64)>,
}

impl std::fmt::Display for CopyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.tables.iter().map(|(t, n)| format!("{t} {n}")).collect();
        f.write_str(&parts.join(", "))
    }
}

/// Why the copy did not happen. Nothing is written to the destination in any of these cases.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The destination already holds users: copying would mix two shops' ledgers.
    #[error("the PostgreSQL database is not empty ({0} users): copy into a fresh database")]
    DestinationNotEmpty(i64),
    /// Reading the SQLite file failed.
    #[error("reading the embedded store: {0}")]
    Source(#[source] sqlx::Error),
    /// Writing PostgreSQL failed; its transaction was rolled back.
    #[error("writing PostgreSQL ({table}): {source}")]
    Destination {
        table: &'static str,
        #[source]
        source: sqlx::Error,
    },
    /// A stored value could not be carried (e.g. dialogue state that is not JSON). `row` is the
    /// row's key (its first column).
    #[error("row {row} of {table} cannot be copied: {reason}")]
    BadRow { table: &'static str, row: String, reason: String },
}

/// Copies every durable fact of `from` into `to` (migrated, with no users) in one transaction.
pub async fn copy_sqlite_to_postgres(
    from: &SqliteStore,
    to: &PgPool,
) -> Result<CopyReport, CopyError> {
    let dest = |table| move |source| CopyError::Destination { table, source };
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(to)
        .await
        .map_err(dest("users"))?;
    if users > 0 {
        return Err(CopyError::DestinationNotEmpty(users));
    }
    // One read transaction: a consistent snapshot of the file.
    let mut src = from.reader().begin().await.map_err(CopyError::Source)?;
    let mut tx = to.begin().await.map_err(dest("begin"))?;
    let mut report = CopyReport::default();
    for table in TABLES {
        let names: Vec<&str> = table.columns.iter().map(|(c, _)| *c).collect();
        let select =
            format!("SELECT {} FROM {} ORDER BY {}", names.join(", "), table.name, names[0]);
        let rows = sqlx::query(&select).fetch_all(&mut *src).await.map_err(CopyError::Source)?;
        let values: Vec<String> = table
            .columns
            .iter()
            .enumerate()
            .map(|(i, (_, kind))| match kind {
                Json => format!("${}::jsonb", i + 1),
                Uuid => format!("${}::uuid", i + 1),
                _ => format!("${}", i + 1),
            })
            .collect();
        let overriding = if table.identity { " OVERRIDING SYSTEM VALUE" } else { "" };
        let insert = format!(
            "INSERT INTO {} ({}){overriding} VALUES ({})",
            table.name,
            names.join(", "),
            values.join(", ")
        );
        for row in &rows {
            let key: String = match row.try_get::<i64, _>(0) {
                Ok(id) => id.to_string(),
                Err(_) => row.try_get(0).map_err(CopyError::Source)?,
            };
            let mut query = sqlx::query(&insert);
            for (i, (column, kind)) in table.columns.iter().enumerate() {
                let bad = |e: sqlx::Error| CopyError::BadRow {
                    table: table.name,
                    row: key.clone(),
                    reason: format!("{column}: {e}"),
                };
                query = match kind {
                    Int => query.bind(row.try_get::<Option<i64>, _>(i).map_err(bad)?),
                    Text | Json | Uuid => {
                        query.bind(row.try_get::<Option<String>, _>(i).map_err(bad)?)
                    }
                    Bool => {
                        query.bind(row.try_get::<Option<i64>, _>(i).map_err(bad)?.map(|b| b != 0))
                    }
                    Time => query.bind(
                        row.try_get::<Option<i64>, _>(i)
                            .map_err(bad)?
                            .map(crate::sqlite::time_from_ms),
                    ),
                };
            }
            query.execute(&mut *tx).await.map_err(dest(table.name))?;
        }
        if table.identity {
            // The next id PostgreSQL hands out follows the copied ones.
            sqlx::query(&format!(
                "SELECT setval(pg_get_serial_sequence('{0}', 'id'), \
                 greatest((SELECT max(id) FROM {0}), 1), (SELECT count(*) > 0 FROM {0}))",
                table.name
            ))
            .execute(&mut *tx)
            .await
            .map_err(dest(table.name))?;
        }
        report.tables.push((table.name, rows.len() as u64));
    }
    // The step sequence continues past every copied step number.
    sqlx::query(
        "SELECT setval('job_step_seq', greatest((SELECT max(step_seq) FROM jobs), 1), true)",
    )
    .execute(&mut *tx)
    .await
    .map_err(dest("job_step_seq"))?;
    tx.commit().await.map_err(dest("commit"))?;
    drop(src);
    Ok(report)
}
