//! The admin's `/broadcast`: a message to every reachable user, paced, resumable.
//!
//! A broadcast is stored ([`BroadcastStore`]) with its text, its position (the last user it
//! reached, in user id order) and its counts. The process running it holds a lease, renewed
//! with every message; a broadcast whose runner stopped (a restart, a crash) is taken up again
//! by [`resume_broadcasts`] from its stored position, in whichever bot process gets it first.
//! Telegram's flood control (`retry_after`) is waited out and the same message sent again; a
//! user who blocked the bot is recorded and skipped from then on.

use crate::conversation::context::BotContext;
use crate::domain::{Language, UserId};
use crate::i18n::{escape_html, Texts};
use crate::ports::AccountsError;
use std::sync::Arc;
use std::time::Duration;
use teloxide::prelude::*;
use teloxide::types::ParseMode;
use teloxide::{ApiError, RequestError};

/// How long a runner's hold on a broadcast lasts without a renewal.
pub const BROADCAST_LEASE: Duration = Duration::from_secs(60);

/// How often [`resume_broadcasts`] looks for a broadcast whose runner stopped.
pub const RESUME_INTERVAL: Duration = Duration::from_secs(30);

/// Times one message is sent again after Telegram asked to wait.
const FLOOD_RETRIES: u32 = 5;

/// Users read per page.
const PAGE: u32 = 200;

/// One broadcast as stored: what to send, where it stands and what it has done so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broadcast {
    pub id: i64,
    /// Where the final report goes.
    pub admin_chat: i64,
    /// The language of the report.
    pub language: Language,
    /// The text as the admin wrote it (escaped when sent).
    pub text: String,
    /// The last user reached; the next one is the first reachable user after it.
    pub cursor: Option<UserId>,
    pub sent: u64,
    pub blocked: u64,
    pub failed: u64,
}

/// Where broadcasts and their progress are kept. Every write of a runner is fenced by its
/// `holder` name: once another runner has taken the broadcast over, the old one can change
/// nothing and learns that it must stop.
#[mockall::automock]
#[async_trait::async_trait]
pub trait BroadcastStore: Send + Sync {
    /// Stores a new broadcast, held by `holder` for `lease`.
    async fn start(
        &self,
        admin_chat: i64,
        language: Language,
        text: &str,
        holder: &str,
        lease: Duration,
    ) -> Result<Broadcast, AccountsError>;

    /// Takes, for `holder`, the oldest unfinished broadcast whose lease has run out (its
    /// runner stopped); `None` when there is none. Two callers never take the same one.
    async fn take_abandoned(
        &self,
        holder: &str,
        lease: Duration,
    ) -> Result<Option<Broadcast>, AccountsError>;

    /// Records the position and counts of `b` and renews the lease; `false` when `holder` no
    /// longer holds it (nothing is written).
    async fn advance(
        &self,
        b: &Broadcast,
        holder: &str,
        lease: Duration,
    ) -> Result<bool, AccountsError>;

    /// Marks the broadcast finished; `false` when `holder` no longer holds it.
    async fn finish(&self, id: i64, holder: &str) -> Result<bool, AccountsError>;
}

/// What one message to one user came to.
enum Outcome {
    Sent,
    Blocked,
    Failed,
}

/// Sends `text` to `user`, waiting out flood control and sending again.
async fn send_one(bot: &Bot, user: UserId, text: &str) -> Outcome {
    let mut waits = 0;
    loop {
        let result = bot.send_message(ChatId(user.get()), text).parse_mode(ParseMode::Html).await;
        match result {
            Ok(_) => return Outcome::Sent,
            Err(RequestError::Api(
                ApiError::BotBlocked
                | ApiError::UserDeactivated
                | ApiError::CantInitiateConversation,
            )) => return Outcome::Blocked,
            Err(RequestError::RetryAfter(wait)) if waits < FLOOD_RETRIES => {
                waits += 1;
                let wait = crate::domain::cap_retry_after(wait.duration());
                tracing::info!(user_id = %user, ?wait, "broadcast: Telegram asked to wait");
                tokio::time::sleep(wait).await;
            }
            Err(e) => {
                tracing::warn!(user_id = %user, error = %e, "broadcast message not sent");
                return Outcome::Failed;
            }
        }
    }
}

/// Starts a broadcast of `text` for the admin in `admin_chat` and runs it in the background.
/// Without a store the broadcast runs once and is not resumed after a restart.
pub async fn start_broadcast(
    bot: Bot,
    ctx: Arc<BotContext>,
    admin_chat: ChatId,
    language: Language,
    text: String,
) -> Result<(), AccountsError> {
    let holder = ctx.process_name.clone();
    let b = match &ctx.broadcasts {
        Some(store) => store.start(admin_chat.0, language, &text, &holder, BROADCAST_LEASE).await?,
        None => Broadcast {
            id: 0,
            admin_chat: admin_chat.0,
            language,
            text,
            cursor: None,
            sent: 0,
            blocked: 0,
            failed: 0,
        },
    };
    tokio::spawn(run_broadcast(bot, ctx, b));
    Ok(())
}

/// Runs `b` from its stored position to the end, then reports the totals to the admin. Stops
/// early, silently, when another process has taken the broadcast over.
#[tracing::instrument(skip_all, fields(broadcast_id = b.id))]
pub async fn run_broadcast(bot: Bot, ctx: Arc<BotContext>, mut b: Broadcast) {
    let holder = ctx.process_name.clone();
    let store = ctx.broadcasts.clone();
    let text = escape_html(&b.text);
    let per_second = ctx.settings.broadcast_per_second.max(1);
    let mut pace = tokio::time::interval(Duration::from_secs(1) / per_second);
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(cursor = ?b.cursor, sent = b.sent, "broadcast running");
    loop {
        let page = match ctx.accounts.reachable_users(b.cursor, PAGE).await {
            Ok(p) => p,
            Err(e) => {
                // The lease runs out and another pass takes the broadcast up again.
                tracing::error!(error = %e, "broadcast paused: users unreadable");
                return;
            }
        };
        if page.is_empty() {
            break;
        }
        for user in page {
            pace.tick().await;
            match send_one(&bot, user, &text).await {
                Outcome::Sent => b.sent += 1,
                Outcome::Blocked => {
                    b.blocked += 1;
                    if let Err(e) = ctx.accounts.set_bot_blocked(user, true).await {
                        tracing::warn!(user_id = %user, error = %e, "block not recorded");
                    }
                }
                Outcome::Failed => b.failed += 1,
            }
            b.cursor = Some(user);
            if let Some(store) = &store {
                match store.advance(&b, &holder, BROADCAST_LEASE).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!("broadcast taken over by another process; stopping");
                        return;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "broadcast paused: progress not recorded");
                        return;
                    }
                }
            }
        }
    }
    if let Some(store) = &store {
        match store.finish(b.id, &holder).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::error!(error = %e, "broadcast end not recorded");
                return;
            }
        }
    }
    tracing::info!(sent = b.sent, blocked = b.blocked, failed = b.failed, "broadcast finished");
    let report = Texts::builtin().render(
        b.language,
        "bot.admin.broadcast_done",
        &[
            ("sent", &b.sent.to_string()),
            ("blocked", &b.blocked.to_string()),
            ("failed", &b.failed.to_string()),
        ],
    );
    let _ = bot.send_message(ChatId(b.admin_chat), report).await;
}

/// Takes up broadcasts whose runner stopped, now and every [`RESUME_INTERVAL`], until
/// `stop` resolves. Run it in every bot process: each broadcast is taken by one.
pub async fn resume_broadcasts(
    bot: Bot,
    ctx: Arc<BotContext>,
    stop: impl std::future::Future<Output = ()>,
) {
    let Some(store) = ctx.broadcasts.clone() else { return };
    tokio::pin!(stop);
    loop {
        loop {
            match store.take_abandoned(&ctx.process_name, BROADCAST_LEASE).await {
                Ok(Some(b)) => {
                    tracing::info!(broadcast_id = b.id, "resuming a broadcast");
                    tokio::spawn(run_broadcast(bot.clone(), ctx.clone(), b));
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "unfinished broadcasts unreadable");
                    break;
                }
            }
        }
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(RESUME_INTERVAL) => {}
        }
    }
}
