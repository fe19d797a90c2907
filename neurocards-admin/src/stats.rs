//! `stats`: today's figures from the same source as the bot's `/stats`
//! ([`today_stats`](neurocards_core::conversation::today_stats)) plus today's purchases.

use crate::Store;
use clap::Args;
use neurocards_core::conversation::{today_stats, TodayStats};
use neurocards_core::ports::{KeyRecord, PurchaseTally};

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub async fn run(store: &Store, args: StatsArgs) -> anyhow::Result<()> {
    let today = today_stats(
        store.stores.queue.as_ref(),
        Some(store.bot.stats.as_ref()),
        chrono::Utc::now(),
    )
    .await?;
    let purchases = store.stores.payments.tally_since(today.since).await?;
    let keys = store.stores.keys.keys().await?;
    if args.json {
        println!("{}", serde_json::to_string(&as_json(&today, &purchases, &keys)?)?);
    } else {
        print!("{}", as_text(&today, &purchases, &keys));
    }
    Ok(())
}

fn as_json(
    today: &TodayStats,
    purchases: &[PurchaseTally],
    keys: &[KeyRecord],
) -> anyhow::Result<serde_json::Value> {
    let mut value = serde_json::to_value(today)?;
    let purchases: Vec<serde_json::Value> = purchases
        .iter()
        .map(|p| {
            serde_json::json!({
                "rail": p.rail,
                "pack": p.pack,
                "currency": p.currency,
                "count": p.count,
                "amount": p.amount,
            })
        })
        .collect();
    if let Some(object) = value.as_object_mut() {
        object.insert("purchases".to_owned(), serde_json::Value::Array(purchases));
        let keys = keys.iter().map(crate::keys::as_json).collect();
        object.insert("keys".to_owned(), serde_json::Value::Array(keys));
    }
    Ok(value)
}

fn as_text(today: &TodayStats, purchases: &[PurchaseTally], keys: &[KeyRecord]) -> String {
    let (q, d) = (&today.queue, &today.daily);
    let mut out = format!("today since {} (UTC)\n", today.since.format("%Y-%m-%d %H:%M"));
    out.push_str(&format!("users: {} total, {} new\n", d.users_total, d.users_new));
    out.push_str(&format!("orders: {}, videos ordered: {}\n", d.orders, d.jobs));
    out.push_str(&format!(
        "queue now: {} waiting ({} ready), {} running, {} workers\n",
        q.queued, q.ready, q.running, q.workers
    ));
    out.push_str(&format!(
        "finished today: {} succeeded, {} failed, {} cancelled; average wait {:.0} s\n",
        q.succeeded, q.failed, q.cancelled, q.avg_wait_secs
    ));
    out.push_str("failures by class:");
    if q.failed_by_class.is_empty() {
        out.push_str(" none\n");
    } else {
        out.push('\n');
        for (class, n) in &q.failed_by_class {
            out.push_str(&format!("  {class}: {n}\n"));
        }
    }
    out.push_str("purchases:");
    if purchases.is_empty() {
        out.push_str(" none\n");
    } else {
        out.push('\n');
        for p in purchases {
            out.push_str(&format!(
                "  {} {} x {} = {} {} (minor units)\n",
                p.rail.as_str(),
                p.pack.as_str(),
                p.count,
                p.amount,
                p.currency
            ));
        }
    }
    out.push_str("KIE keys:");
    if keys.is_empty() {
        out.push_str(" none\n");
    } else {
        out.push('\n');
        for key in keys {
            out.push_str(&format!("  {}\n", crate::keys::as_line(key)));
        }
    }
    out
}
