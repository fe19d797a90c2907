//! "Start": placing the order. Idempotent on the dialogue's order key, so a double tap or a
//! redelivered update charges once; "accepted" is said only after the order is committed.

use super::{send, set_state, t, take_buttons_off, tr, unavailable};
use crate::conversation::context::{BotContext, BotCounters};
use crate::conversation::keyboards;
use crate::conversation::session::Session;
use crate::conversation::state::State;
use crate::domain::{JobSpec, OrderId, OrderKey};
use crate::ports::{CancelScope, NewOrder, QueueError};
use teloxide::prelude::*;
use teloxide::types::MaybeInaccessibleMessage;

/// What the tap on "Start" led to, for the callback answer.
pub(super) enum StartOutcome {
    /// The button does not belong to the current dialogue.
    Stale,
    /// Handled; the messages were sent.
    Done,
}

/// Places the order the summary shows, if `key` is the dialogue's current order key.
#[tracing::instrument(name = "place_order", skip_all, fields(user_id = %s.user_id, order_key = %key))]
pub(super) async fn on_start_order(
    bot: &Bot,
    ctx: &BotContext,
    s: &Session,
    state: &State,
    key: &str,
    summary: Option<&MaybeInaccessibleMessage>,
) -> Result<StartOutcome, super::ConversationError> {
    let State::Confirming { draft, count, key: expected } = state else {
        return Ok(StartOutcome::Stale);
    };
    if expected != key {
        return Ok(StartOutcome::Stale);
    }
    if let Some(limit) = ctx.settings.order_rate_limit {
        match ctx.accounts.recent_orders(s.user_id, limit.max_orders).await {
            Ok(recent) => {
                let times: Vec<_> = recent.iter().map(|o| o.created_at).collect();
                if let Some(wait) = limit.wait(&times, chrono::Utc::now()) {
                    let minutes = wait.as_secs().div_ceil(60).max(1).to_string();
                    let text = tr(ctx, s.lang, "bot.order.rate_limited", &[("minutes", &minutes)]);
                    send(bot, s, text, Some(keyboards::menu_only(ctx.texts, s.lang))).await?;
                    return Ok(StartOutcome::Done);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "recent orders unreadable; order refused");
                unavailable(bot, ctx, s).await?;
                return Ok(StartOutcome::Done);
            }
        }
    }

    if ctx.templates.get(&draft.template).is_none() {
        // The catalogue changed since the summary: choose again.
        super::create::choose_template(bot, ctx, s, draft.product_id).await?;
        return Ok(StartOutcome::Done);
    }
    let Ok(order_key) = OrderKey::parse(format!("tg:{key}")) else {
        return Ok(StartOutcome::Stale);
    };
    // The format and price the summary showed (its key changes with every format change).
    let format = super::create::draft_format(ctx, draft);
    let order = NewOrder {
        user_id: s.user_id,
        key: order_key,
        count: *count,
        price_per_video: super::create::unit_price(ctx, &format),
        spec: JobSpec {
            product_id: Some(draft.product_id),
            template: draft.template.clone(),
            wishes: draft.wishes.clone(),
            user_prompt: draft.user_prompt.clone(),
            model: format.model,
            options: format.options,
            language: s.lang,
        },
    };
    match ctx.queue.place_order(&order).await {
        Ok(placed) => {
            set_state(s, State::Idle).await?;
            if !placed.newly_placed {
                // The same key was placed by an earlier delivery of this tap.
                return Ok(StartOutcome::Stale);
            }
            BotCounters::inc(&ctx.counters.orders_placed);
            tracing::info!(order_id = %placed.order_id, jobs = placed.jobs.len(), "order placed");
            take_buttons_off(bot, summary).await;
            let text = tr(
                ctx,
                s.lang,
                "bot.order.accepted",
                &[
                    ("order", &placed.order_id.to_string()),
                    ("count", &count.get().to_string()),
                    ("charged", &placed.charged.to_string()),
                    ("balance", &placed.balance_after.to_string()),
                ],
            );
            let kb = keyboards::accepted(ctx.texts, s.lang, placed.order_id);
            send(bot, s, text, Some(kb)).await?;
        }
        Err(QueueError::InsufficientCredits { needed, available }) => {
            BotCounters::inc(&ctx.counters.orders_insufficient);
            let missing = needed.checked_sub(available).unwrap_or_default();
            let text = tr(
                ctx,
                s.lang,
                "bot.order.insufficient",
                &[
                    ("needed", &needed.to_string()),
                    ("available", &available.to_string()),
                    ("missing", &missing.to_string()),
                ],
            );
            send(bot, s, text, Some(keyboards::topup_and_menu(ctx.texts, s.lang))).await?;
        }
        Err(e) => {
            tracing::error!(error = %e, retryable = e.is_retryable(), "order not placed");
            send(bot, s, t(ctx, s.lang, "bot.order.unavailable"), None).await?;
        }
    }
    Ok(StartOutcome::Done)
}

/// What a Cancel press came to.
pub(super) enum CancelOutcome {
    /// Videos were cancelled and refunded; the answer is in the chat.
    Cancelled,
    /// Nothing was waiting (already started, finished, cancelled, or not the user's order).
    Nothing,
    /// The queue could not be reached; nothing changed.
    Unavailable,
}

/// "Cancel the order": the order's videos that have not started are cancelled and refunded
/// at once, exactly once however often the button is pressed or a worker claims them at the
/// same moment (the queue decides each job one way). Videos already in the works go on.
#[tracing::instrument(skip_all, fields(user_id = %s.user_id, order_id = %order_id))]
pub(super) async fn on_cancel_order(
    bot: &Bot,
    ctx: &BotContext,
    s: &Session,
    order_id: OrderId,
    pressed: Option<&MaybeInaccessibleMessage>,
) -> Result<CancelOutcome, super::ConversationError> {
    let scope = CancelScope::Order { order: order_id, user: s.user_id };
    let cancelled = match ctx.queue.cancel_queued(scope).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "order not cancelled");
            return Ok(CancelOutcome::Unavailable);
        }
    };
    if cancelled.jobs.is_empty() {
        return Ok(CancelOutcome::Nothing);
    }
    BotCounters::add(&ctx.counters.jobs_cancelled, cancelled.jobs.len() as u64);
    take_buttons_off(bot, pressed).await;
    let mut text = tr(
        ctx,
        s.lang,
        "bot.order.cancelled",
        &[
            ("order", &order_id.to_string()),
            ("count", &cancelled.jobs.len().to_string()),
            ("refunded", &cancelled.refunded.to_string()),
            ("balance", &cancelled.balance_after.to_string()),
        ],
    );
    if cancelled.still_running > 0 {
        text.push('\n');
        let running = cancelled.still_running.to_string();
        text.push_str(&tr(ctx, s.lang, "bot.order.cancelled_rest", &[("running", &running)]));
    }
    send(bot, s, text, Some(keyboards::menu_only(ctx.texts, s.lang))).await?;
    Ok(CancelOutcome::Cancelled)
}
