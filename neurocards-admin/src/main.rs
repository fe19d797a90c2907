//! `neurocards-admin`: operator commands on the configured store, PostgreSQL (`DATABASE_URL`)
//! or the embedded store (`DATA_DIR`), opened exactly as the bot opens it (the environment and
//! `.env`, migrations applied on open).
//!
//! Every command prints one clear line on success (or the figures asked for) and exits
//! non-zero with a sentence on bad input: an unknown user or job, a job in the wrong state,
//! an amount out of range. Money moves only through the store's ports, so every credit or
//! debit is a ledger entry written in the same transaction as what it pays for.
//!
//! One module per command group: [`accounts`] (grant, balance), [`stats`], [`jobs`], [`keys`].

mod accounts;
mod jobs;
mod keys;
mod stats;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use neurocards_core::config::Settings;
use neurocards_core::stores::{BotStores, Stores};
use neurocards_core::wiring::{self, OpenedStore};
use std::process::ExitCode;

/// Operator commands for a Neurocards store (the store the environment configures:
/// DATABASE_URL, or the embedded store in DATA_DIR).
#[derive(Debug, Parser)]
#[command(name = "neurocards-admin", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply the configured store's migrations and exit.
    Migrate,
    /// Grant credits to a user (a `grant` ledger entry) and print the new balance.
    Grant(accounts::GrantArgs),
    /// A user's balance and last ledger entries.
    Balance(accounts::BalanceArgs),
    /// Today's figures (UTC day), as the bot's /stats shows them.
    Stats(stats::StatsArgs),
    /// Generation jobs: list, retry a failed one, cancel a waiting one.
    #[command(subcommand)]
    Jobs(jobs::JobsCommand),
    /// KIE keys across the fleet: health, unblock, balances.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
}

/// The opened store and its ports.
struct Store {
    opened: OpenedStore,
    stores: Stores,
    bot: BotStores,
}

impl Store {
    async fn open(settings: &Settings) -> anyhow::Result<Self> {
        let opened = OpenedStore::open(settings).await.context("opening the store")?;
        let stores = opened.stores(wiring::queue_config(settings));
        let bot = opened.bot_stores();
        Ok(Self { opened, stores, bot })
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A missing .env file is normal (production sets the environment itself).
    let _ = dotenvy::dotenv();
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("neurocards-admin: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("neurocards-admin: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("neurocards-admin: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
    let store = Store::open(&settings).await?;
    let result = match command {
        Command::Migrate => {
            println!("migrations applied ({})", store.opened.describe());
            Ok(())
        }
        Command::Grant(args) => accounts::grant(&store, args).await,
        Command::Balance(args) => accounts::balance(&store, args).await,
        Command::Stats(args) => stats::run(&store, args).await,
        Command::Jobs(command) => jobs::run(&store, command).await,
        Command::Keys(command) => keys::run(&store, &settings, command).await,
    };
    store.opened.close().await;
    result
}

/// A positive Telegram user id, refused with a sentence otherwise.
fn user_id(raw: i64) -> anyhow::Result<neurocards_core::domain::UserId> {
    anyhow::ensure!(raw > 0, "a user id is a positive Telegram id (got {raw})");
    Ok(neurocards_core::domain::UserId(raw))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn negative_amounts_reach_the_grant_check() {
        let cli = Cli::try_parse_from(["neurocards-admin", "grant", "42", "-5"]);
        assert!(cli.is_ok(), "{cli:?}");
    }
}
