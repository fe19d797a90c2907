//! `grant` and `balance`: the accounts port, as the bot's `/grant` and `/balance` use it.

use crate::{user_id, Store};
use clap::Args;
use neurocards_core::conversation::MAX_GRANT;
use neurocards_core::domain::{Credits, LedgerReason};
use neurocards_core::ports::LedgerEntry;

#[derive(Debug, Args)]
pub struct GrantArgs {
    /// The Telegram user id.
    user_id: i64,
    /// Credits to add, 1..=100000 (credits are taken back only through a payment refund).
    #[arg(allow_negative_numbers = true)]
    credits: i64,
    /// Why (kept on the ledger entry); "neurocards-admin" when not given.
    #[arg(long)]
    note: Option<String>,
}

#[derive(Debug, Args)]
pub struct BalanceArgs {
    /// The Telegram user id.
    user_id: i64,
    /// How many of the latest ledger entries to show.
    #[arg(long, default_value_t = 10)]
    entries: usize,
}

/// `grant <user> <credits> [--note]`: a `grant` ledger entry, like the bot's `/grant`.
pub async fn grant(store: &Store, args: GrantArgs) -> anyhow::Result<()> {
    let user = user_id(args.user_id)?;
    anyhow::ensure!(
        (1..=MAX_GRANT).contains(&args.credits),
        "refused: a grant adds 1..={MAX_GRANT} credits (got {}); nothing was written",
        args.credits
    );
    let amount = Credits::new(args.credits)?;
    let accounts = &store.stores.accounts;
    if accounts.user(user).await?.is_none() {
        anyhow::bail!("user {user} not found (a user exists once they have written to the bot)");
    }
    let note = match args.note.as_deref().map(str::trim) {
        Some(note) if !note.is_empty() => note.to_owned(),
        _ => "neurocards-admin".to_owned(),
    };
    let balance = accounts.credit(user, amount, LedgerReason::Grant, &note).await?;
    println!("granted {amount} credits to user {user}: balance {balance}");
    Ok(())
}

/// `balance <user>`: the balance and the latest ledger entries, oldest of them first.
pub async fn balance(store: &Store, args: BalanceArgs) -> anyhow::Result<()> {
    let user = user_id(args.user_id)?;
    let accounts = &store.stores.accounts;
    let Some(account) = accounts.user(user).await? else {
        anyhow::bail!("user {user} not found");
    };
    let balance = accounts.balance(user).await?;
    let ledger = accounts.ledger(user).await?;
    let name = account.username.as_deref().map(|u| format!(" @{u}")).unwrap_or_default();
    let banned = if account.banned { ", banned" } else { "" };
    println!("user {user}{name}: balance {balance} credits{banned}");
    let shown = &ledger[ledger.len().saturating_sub(args.entries)..];
    if shown.is_empty() {
        println!("no ledger entries");
        return Ok(());
    }
    println!("last {} of {} ledger entries (oldest first):", shown.len(), ledger.len());
    for entry in shown {
        println!("  {}", entry_line(entry));
    }
    Ok(())
}

fn entry_line(e: &LedgerEntry) -> String {
    let mut line = format!(
        "{}  {:+}  {}",
        e.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
        e.delta,
        e.reason.as_str()
    );
    if let Some(order) = e.order_id {
        line.push_str(&format!("  order {order}"));
    }
    if let Some(job) = e.job_id {
        line.push_str(&format!("  job {job}"));
    }
    if let Some(note) = e.note.as_deref().filter(|n| !n.is_empty()) {
        line.push_str(&format!("  \"{note}\""));
    }
    line
}
