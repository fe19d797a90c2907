//! What the conversation keeps in the database to stay safe across replicas: which Telegram
//! updates were already taken (so a redelivered update is handled once) and how often a user
//! used a costly action (so one user cannot run up the LLM bill).

use super::context::{BotContext, BotCounters};
use crate::domain::UserId;
use crate::ports::AccountsError;
use std::time::Duration;

/// Claims of Telegram update ids.
///
/// Telegram delivers an update again when it saw no answer (a webhook request that timed out or
/// failed, a poller that stopped before confirming its offset). Each update is claimed before
/// any handler runs, in the same database every replica uses, so the second delivery finds the
/// claim and is skipped: a `/grant` mints once, a `/broadcast` runs once, a tap places one
/// order.
///
/// The guarantee is at most once: an update whose handling fails midway (the process dies, a
/// request times out) stays claimed and is not handled again. The user repeats a message that
/// got no answer; nothing is charged, granted or sent twice.
#[mockall::automock]
#[async_trait::async_trait]
pub trait UpdateClaims: Send + Sync {
    /// Claims update `update_id` of bot `bot_id`: `Ok(true)` for its first delivery (handle
    /// it), `Ok(false)` when it was claimed before (skip it). Claims are kept at least
    /// [`UPDATE_CLAIM_RETENTION`]. An error means the store could not be reached: nothing was
    /// claimed.
    async fn claim(&self, bot_id: i64, update_id: i64) -> Result<bool, AccountsError>;
}

/// How long a claim is kept: twice the 24 hours Telegram keeps an undelivered update, and well
/// under the week of silence after which Telegram may restart its update ids at random.
pub const UPDATE_CLAIM_RETENTION: Duration = Duration::from_secs(48 * 3600);

/// Per-user counters of costly actions within a sliding window, shared by every replica.
#[mockall::automock]
#[async_trait::async_trait]
pub trait UsageQuota: Send + Sync {
    /// Records one use of `action` by `user` if fewer than `limit` uses were recorded within the
    /// last `window`: `Ok(None)` when recorded (go ahead), `Ok(Some(wait))` when the limit is
    /// reached, `wait` being how long until the oldest counted use leaves the window. Concurrent
    /// calls for the same user and action are serialised, so the limit holds across replicas.
    async fn try_consume(
        &self,
        user: UserId,
        action: &str,
        limit: u32,
        window: Duration,
    ) -> Result<Option<Duration>, AccountsError>;
}

/// The usage action counted for own-idea refinement by the LLM.
pub const IDEA_REFINE: &str = "idea_refine";

/// What a webhook delivery of an update came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Handled, skipped as a repeat, or not for the conversation: answer 200.
    Done,
    /// Nothing was done because the claim could not be recorded: ask Telegram to deliver the
    /// update again (any non-2xx answer does).
    Retry,
}

/// What claiming an update gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Claim {
    /// The first delivery: handle it.
    First,
    /// Claimed before: skip it.
    Repeat,
    /// The claim could not be recorded: do nothing now.
    Unavailable,
}

/// Claims `update_id` through the context's store (every update is a first delivery without
/// one).
pub(super) async fn claim(ctx: &BotContext, bot_id: i64, update_id: i64) -> Claim {
    let Some(claims) = &ctx.update_claims else { return Claim::First };
    match claims.claim(bot_id, update_id).await {
        Ok(true) => Claim::First,
        Ok(false) => {
            BotCounters::inc(&ctx.counters.repeated_updates);
            tracing::info!(update_id, "redelivered update skipped");
            Claim::Repeat
        }
        Err(e) => {
            BotCounters::inc(&ctx.counters.unclaimed_updates);
            tracing::error!(update_id, error = %e, "update claim not recorded; update not handled");
            Claim::Unavailable
        }
    }
}
