//! `keys health | unblock | balances`: the KIE keys' fleet-wide state ([`KeyBudgets`]), as
//! every worker records it: which keys take new tasks, which cool down or are blocked and why,
//! and each key's last balance. Keys are named by their id (`key-` and 8 hex digits of a hash),
//! never by the key.

use crate::Store;
use chrono::Utc;
use clap::Subcommand;
use neurocards_core::kie::{collect_keys, key_id, KieProvider};
use neurocards_core::ports::KeyRecord;
use neurocards_core::wiring;
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Each known key: in rotation, cooling or blocked (until when, and why), paused status
    /// checks, requests sent by the fleet, the last error and the last balance.
    Health {
        /// Print one JSON array instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Put one key (by its id) or every key back into rotation for the whole fleet, e.g.
    /// after topping up the KIE account.
    Unblock {
        /// The key's id as `keys health` shows it (`key-0a1b2c3d`); every key when not given.
        key_id: Option<String>,
    },
    /// Each key's last recorded balance; with `--refresh`, read now from KIE with the keys of
    /// this environment (`KIE_API_KEY`, `KIE_API_KEYS`, `KIE_API_KEY_1..N`) and recorded.
    Balances {
        #[arg(long)]
        refresh: bool,
    },
}

pub async fn run(
    store: &Store,
    settings: &neurocards_core::config::Settings,
    command: KeysCommand,
) -> anyhow::Result<()> {
    let keys = store.stores.keys.as_ref();
    match command {
        KeysCommand::Health { json } => {
            let records = keys.keys().await?;
            if json {
                println!("{}", serde_json::Value::Array(records.iter().map(as_json).collect()));
            } else if records.is_empty() {
                println!("no KIE key has been used with this store yet");
            } else {
                for r in &records {
                    println!("{}", as_line(r));
                }
            }
            Ok(())
        }
        KeysCommand::Unblock { key_id } => {
            if let Some(id) = &key_id {
                anyhow::ensure!(
                    is_key_id(id),
                    "{id:?} is not a key id (key- and 8 hex digits, as `keys health` shows)"
                );
                let known = keys.keys().await?;
                anyhow::ensure!(known.iter().any(|k| &k.key_id == id), "no key {id} in this store");
            }
            let lifted = keys.lift(key_id.as_deref()).await?;
            match key_id {
                Some(id) if lifted == 0 => println!("{id} was already in rotation"),
                Some(id) => println!("{id} is back in rotation"),
                None => println!("every key is in rotation ({lifted} were out)"),
            }
            Ok(())
        }
        KeysCommand::Balances { refresh } => {
            if refresh {
                let secrets = collect_keys(|k| std::env::var(k).ok());
                anyhow::ensure!(!secrets.is_empty(), "no KIE key in this environment: set KIE_API_KEY, KIE_API_KEYS or KIE_API_KEY_1..N");
                let ids: Vec<String> = secrets.iter().map(key_id).collect();
                let provider = KieProvider::with_budgets(
                    wiring::kie_config(settings, secrets),
                    store.stores.keys.clone(),
                )?;
                // A zero period: this read is the operator's, whoever read last.
                provider.refresh_balances(Duration::ZERO).await;
                let records = keys.keys().await?;
                for r in records.iter().filter(|r| ids.contains(&r.key_id)) {
                    println!("{}", balance_line(r));
                }
            } else {
                for r in keys.keys().await? {
                    println!("{}", balance_line(&r));
                }
            }
            Ok(())
        }
    }
}

/// `key-` and 8 lowercase hex digits.
fn is_key_id(id: &str) -> bool {
    id.strip_prefix("key-").is_some_and(|hex| {
        hex.len() == 8 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

fn time(t: chrono::DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// One key on one line.
pub fn as_line(r: &KeyRecord) -> String {
    let now = Utc::now();
    let mut parts = vec![match r.off.filter(|o| o.until > now) {
        Some(off) => format!("{} until {} ({})", off.kind.as_str(), time(off.until), off.class),
        None => "in rotation".to_owned(),
    }];
    if let Some(until) = r.checks_paused_until.filter(|u| *u > now) {
        parts.push(format!("status checks paused until {}", time(until)));
    }
    parts.push(format!("{} creates, {} status checks", r.creates, r.checks));
    if let Some((class, at)) = r.last_error {
        parts.push(format!("last error {class} at {}", time(at)));
    }
    if let Some((credits, _)) = r.credits {
        parts.push(format!("{credits:.0} credits"));
    }
    format!("{}: {}", r.key_id, parts.join(", "))
}

fn balance_line(r: &KeyRecord) -> String {
    let figure = match r.credits {
        Some((credits, at)) => format!("{credits:.2} credits (read {})", time(at)),
        None => "no balance read yet".to_owned(),
    };
    match &r.credits_error {
        Some(why) => format!("{}: {figure}; the last read failed: {why}", r.key_id),
        None => format!("{}: {figure}", r.key_id),
    }
}

pub fn as_json(r: &KeyRecord) -> serde_json::Value {
    let now = Utc::now();
    let off = r.off.filter(|o| o.until > now);
    serde_json::json!({
        "key_id": r.key_id,
        "state": r.state_at(now),
        "until": off.map(|o| o.until.to_rfc3339()),
        "reason": off.map(|o| o.class.as_str()),
        "checks_paused_until": r.checks_paused_until.filter(|u| *u > now).map(|u| u.to_rfc3339()),
        "creates": r.creates,
        "checks": r.checks,
        "last_error": r.last_error.map(|(c, _)| c.as_str()),
        "last_error_at": r.last_error.map(|(_, at)| at.to_rfc3339()),
        "credits": r.credits.map(|(c, _)| c),
        "credits_at": r.credits.map(|(_, at)| at.to_rfc3339()),
        "credits_error": r.credits_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_are_checked_before_they_reach_the_store() {
        assert!(is_key_id("key-0a1b2c3d"));
        for bad in ["key-0A1B2C3D", "key-123", "sk-live-abc", "key-0a1b2c3d4", ""] {
            assert!(!is_key_id(bad), "{bad}");
        }
    }
}
