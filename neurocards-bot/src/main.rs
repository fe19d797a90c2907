//! The Telegram bot process: configuration → store → adapters → conversation, served by
//! polling (one process at a time) or by webhook (any number of replicas on PostgreSQL), plus
//! the HTTP surface on `HTTP_ADDR`. Stops gracefully on SIGTERM or Ctrl-C.
//!
//! Without a PostgreSQL `DATABASE_URL` the bot runs everything in this one process on the
//! embedded store (`neurocards.db` in `DATA_DIR`), the generation pipeline included; with
//! PostgreSQL it runs the pipeline too when `ALL_IN_ONE=1`.
//!
//! `neurocards-bot migrate` applies the migrations of the configured store and exits.
//! `neurocards-bot copy-to-postgres <postgres://…>` copies the embedded store into an empty
//! PostgreSQL database (see [`neurocards_core::store_copy`]) and exits.

mod app;
mod polling;
mod polling_lock;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use neurocards_core::config::Settings;
use neurocards_core::wiring::OpenedStore;

/// The Neurocards Telegram bot. Settings come from the environment (and `.env`); without a
/// subcommand it runs the bot until SIGTERM or Ctrl-C.
#[derive(Debug, Parser)]
#[command(name = "neurocards-bot", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<BotCommand>,
}

#[derive(Debug, Subcommand)]
enum BotCommand {
    /// Apply the configured store's migrations and exit.
    Migrate,
    /// Copy the embedded store into an empty PostgreSQL database (migrated first) and exit.
    CopyToPostgres {
        /// The target database: postgres://user@host/database
        url: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _ = dotenvy::dotenv();
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("configuration error: {e}");
            std::process::exit(2);
        }
    };
    neurocards_core::telemetry::init(settings.log_format);
    let store = OpenedStore::open(&settings).await.context("opening the store")?;
    match cli.command {
        Some(BotCommand::CopyToPostgres { url }) => return copy_to_postgres(&store, &url).await,
        Some(BotCommand::Migrate) => {
            tracing::info!(store = %store.describe(), "migrations applied");
            store.close().await;
            return Ok(());
        }
        None => {}
    }
    // The embedded store serves one process: a second bot on the same file would run a second
    // pipeline and poll Telegram twice.
    let _sole_process = match &store {
        OpenedStore::Sqlite(sqlite) => {
            let lock = neurocards_core::sqlite::FilePollingLock::try_acquire(sqlite)
                .with_context(|| format!("locking {}", sqlite.path().display()))?;
            match lock {
                Some(lock) => Some(lock),
                None => anyhow::bail!(
                    "another neurocards-bot is running on {} (the embedded store serves one \
                     process; use PostgreSQL to run several)",
                    sqlite.path().display()
                ),
            }
        }
        OpenedStore::Postgres(_) => None,
    };
    tracing::info!(
        store = %store.describe(),
        mode = if settings.all_in_one { "all-in-one (bot and pipeline)" } else { "bot only" },
        "neurocards-bot starting"
    );
    let result = app::run(settings, store.clone(), neurocards_core::shutdown::signal()).await;
    store.close().await;
    result
}

/// `copy-to-postgres <url>`: the embedded store into a fresh PostgreSQL database, migrated
/// first. Refuses a database that already has users.
async fn copy_to_postgres(store: &OpenedStore, url: &str) -> anyhow::Result<()> {
    let OpenedStore::Sqlite(sqlite) = store else {
        anyhow::bail!("copy-to-postgres copies the embedded store: unset DATABASE_URL (or set it to sqlite://…)");
    };
    anyhow::ensure!(
        url.starts_with("postgres://") || url.starts_with("postgresql://"),
        "usage: neurocards-bot copy-to-postgres postgres://user@host/database"
    );
    let pool = neurocards_core::postgres::connect(url, 2).await.context("opening PostgreSQL")?;
    neurocards_core::postgres::migrate(&pool).await.context("migrating PostgreSQL")?;
    let report = neurocards_core::store_copy::copy_sqlite_to_postgres(sqlite, &pool).await?;
    tracing::info!(%report, from = %sqlite.path().display(), "copied to PostgreSQL");
    pool.close().await;
    store.close().await;
    Ok(())
}
