//! The embedded store: every storage port on one SQLite file, for a bot that runs alone on one
//! machine (the all-in-one mode). Same guarantees as the PostgreSQL adapter — atomic idempotent
//! orders, fenced leases, one refund per job, durable retries, fair claims, rescues — proved by
//! the same conformance suites.
//!
//! How it differs from PostgreSQL:
//! - **One writer.** Every statement or transaction that writes goes through one connection
//!   (the writer pool holds exactly one), so writers queue in the process instead of meeting
//!   `SQLITE_BUSY`, and a read-then-write transaction cannot lose its write lock to another
//!   writer. Pure reads go through a small pool of read-only connections; WAL mode lets them
//!   run beside the writer. No adapter ever takes a second connection while it holds a
//!   transaction.
//! - **In-process wake-ups** ([`Wakeups`]) replace LISTEN/NOTIFY: the store is one process.
//! - **Times** are integer milliseconds since the Unix epoch (UTC).
//!
//! The schema lives in the workspace's `migrations/sqlite/`; [`SqliteStore::open`] applies it.

mod error;
mod queue;
mod stores;
mod time;

mod accounts;
mod key_budgets;
mod order_progress;
mod payments;
mod products;
mod task_signals;

pub use accounts::SqliteAccounts;
pub use error::SqliteError;
pub use key_budgets::SqliteKeyBudgets;
pub use queue::SqliteJobQueue;
#[cfg(feature = "telegram")]
pub use stores::bot_stores;
pub use stores::stores;
pub(crate) use time::from_ms as time_from_ms;

mod polling_lock;
pub use polling_lock::FilePollingLock;

#[cfg(feature = "telegram")]
mod dialogues;
#[cfg(feature = "telegram")]
pub use dialogues::SqliteDialogueStorage;

#[cfg(feature = "telegram")]
mod bot_queries;
#[cfg(feature = "telegram")]
pub use bot_queries::SqliteBotQueries;

#[cfg(feature = "telegram")]
mod update_claims;
pub use order_progress::SqliteOrderProgress;
pub use payments::SqlitePayments;
pub use products::SqliteProducts;
pub use task_signals::SqliteTaskSignals;
#[cfg(feature = "telegram")]
pub use update_claims::{SqliteUpdateClaims, SqliteUsageQuota};
#[cfg(feature = "telegram")]
mod broadcasts;
#[cfg(feature = "telegram")]
pub use broadcasts::SqliteBroadcasts;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// The file name of the store in `DATA_DIR` (or the working directory).
pub const DEFAULT_FILE_NAME: &str = "neurocards.db";

/// How long a connection waits for a lock held by another process (the admin CLI, a backup)
/// before its statement fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Read-only connections beside the writer.
const READERS: u32 = 4;

/// In-process wake-ups: the embedded store's LISTEN/NOTIFY. Shared by every adapter built on
/// one [`SqliteStore`], so that the bot's KIE callback route and the pipeline (in the same
/// process) reach each other.
#[derive(Debug, Default)]
pub struct Wakeups {
    /// New or requeued work: wakes workers waiting in `JobQueue::wait_for_work`.
    pub(crate) work: Notify,
    /// A task wake-up was recorded: wakes workers waiting in `TaskSignals::wait_wakeup` (each
    /// checks its own row).
    pub(crate) tasks: Notify,
}

/// One SQLite file, opened and migrated: the writer connection, the readers and the
/// wake-ups. Cheap to clone; every clone is the same store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    wakeups: Arc<Wakeups>,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating it when missing) the store at `location` — a path, or a
    /// `sqlite://path` URL — and applies the migrations not applied yet.
    pub async fn open(location: &str) -> Result<Self, SqliteError> {
        let path = file_path(location)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| SqliteError::Directory {
                dir: dir.display().to_string(),
                source: e,
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.clone())
            .await
            .map_err(|e| SqliteError::Open { path: path.display().to_string(), source: e })?;
        sqlx::migrate!("../migrations/sqlite").run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(READERS)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.read_only(true))
            .await
            .map_err(|e| SqliteError::Open { path: path.display().to_string(), source: e })?;
        Ok(Self { writer, reader, wakeups: Arc::new(Wakeups::default()), path })
    }

    /// Opens `neurocards.db` in `dir` (see [`SqliteStore::open`]).
    pub async fn open_in(dir: &Path) -> Result<Self, SqliteError> {
        Self::open(&dir.join(DEFAULT_FILE_NAME).to_string_lossy()).await
    }

    /// The single writer connection: every statement or transaction that writes goes here.
    pub fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    /// Read-only connections, for statements that only read.
    pub fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    /// The in-process wake-ups shared by this store's adapters.
    pub fn wakeups(&self) -> &Arc<Wakeups> {
        &self.wakeups
    }

    /// The file the store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes every connection (checkpointing the WAL into the main file).
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

/// Whether `url` names the embedded store (`sqlite:` URLs) rather than PostgreSQL.
pub fn is_sqlite_url(url: &str) -> bool {
    url.trim_start().to_ascii_lowercase().starts_with("sqlite:")
}

/// The file path of a `sqlite://path`, `sqlite:path` or plain path location. Query parameters
/// are not accepted: the store sets its own connection options.
fn file_path(location: &str) -> Result<PathBuf, SqliteError> {
    let location = location.trim();
    let rest = if is_sqlite_url(location) {
        let rest = &location["sqlite:".len()..];
        rest.strip_prefix("//").unwrap_or(rest)
    } else {
        location
    };
    if rest.is_empty() || rest.contains('?') || rest == ":memory:" {
        return Err(SqliteError::InvalidLocation(
            "expected sqlite://<file path> (a file; no query parameters, not :memory:)".to_owned(),
        ));
    }
    // `FromStr` is only used to reject what sqlx itself would refuse.
    SqliteConnectOptions::from_str(&format!("sqlite://{rest}"))
        .map_err(|_| SqliteError::InvalidLocation("cannot parse the sqlite:// URL".to_owned()))?;
    Ok(PathBuf::from(rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_name_files() {
        assert_eq!(file_path("sqlite://data/n.db").expect("url"), PathBuf::from("data/n.db"));
        assert_eq!(
            file_path("sqlite:///var/lib/n.db").expect("abs"),
            PathBuf::from("/var/lib/n.db")
        );
        assert_eq!(file_path("sqlite:n.db").expect("short"), PathBuf::from("n.db"));
        assert_eq!(file_path("./n.db").expect("path"), PathBuf::from("./n.db"));
        for bad in ["sqlite://", "sqlite://:memory:", "sqlite://n.db?mode=ro", ""] {
            assert!(file_path(bad).is_err(), "{bad}");
        }
        assert!(is_sqlite_url("SQLITE://x.db"));
        assert!(!is_sqlite_url("postgres://localhost/x"));
    }

    #[tokio::test]
    async fn opens_migrates_and_reopens() {
        let dir = std::env::temp_dir().join(format!("nc-open-{}", uuid::Uuid::new_v4()));
        let store = SqliteStore::open_in(&dir).await.expect("open");
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(store.writer())
            .await
            .expect("pragma");
        assert_eq!(mode, "wal");
        let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(store.reader())
            .await
            .expect("pragma");
        assert_eq!(fk, 1);
        let refused =
            sqlx::query("INSERT INTO users (id) VALUES (1)").execute(store.reader()).await;
        assert!(refused.is_err(), "readers are read-only");
        store.close().await;
        let again = SqliteStore::open_in(&dir).await.expect("reopen: migrations already applied");
        again.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
