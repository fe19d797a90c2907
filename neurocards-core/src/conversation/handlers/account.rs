//! "My account" (balance, recent orders), top-up and help.

use super::{balance, send, t, template_name, tr, HandlerResult};
use crate::conversation::context::BotContext;
use crate::conversation::keyboards;
use crate::conversation::session::Session;
use crate::domain::{JobStatus, Language, OrderId};
use crate::i18n::escape_html;
use crate::ports::OrderSummary;
use teloxide::prelude::*;

/// How many recent orders the account page lists.
const RECENT_ORDERS: u32 = 5;

/// Balance (an error line when unreadable, never a zero) and the last orders with status.
pub(super) async fn show(bot: &Bot, ctx: &BotContext, s: &Session) -> HandlerResult {
    let (balance, orders) =
        tokio::join!(balance(ctx, s), ctx.accounts.recent_orders(s.user_id, RECENT_ORDERS));
    let balance = match balance {
        Ok(b) => b.to_string(),
        Err(e) => {
            tracing::warn!(user_id = %s.user_id, error = %e, "balance unreadable");
            t(ctx, s.lang, "bot.account.balance_error").to_owned()
        }
    };
    let orders = match orders {
        Ok(list) if list.is_empty() => t(ctx, s.lang, "bot.account.no_orders").to_owned(),
        Ok(list) => list.iter().map(|o| order_line(ctx, s.lang, o)).collect::<Vec<_>>().join("\n"),
        Err(_) => t(ctx, s.lang, "bot.account.orders_error").to_owned(),
    };
    let referral = referral_text(ctx, s).await;
    let text = tr(
        ctx,
        s.lang,
        "bot.account.text",
        &[
            ("id", &s.user_id.to_string()),
            ("balance", &balance),
            ("orders", &orders),
            ("referral", &referral),
        ],
    );
    send(bot, s, text, Some(keyboards::topup_and_menu(ctx.texts, s.lang))).await.map(|_| ())
}

/// "My orders": the recent orders with their statuses, and a Cancel button for each order
/// with videos still waiting in the queue.
pub(super) async fn orders(bot: &Bot, ctx: &BotContext, s: &Session) -> HandlerResult {
    let (text, waiting) = match ctx.accounts.recent_orders(s.user_id, RECENT_ORDERS).await {
        Ok(list) if list.is_empty() => (t(ctx, s.lang, "bot.account.no_orders").to_owned(), vec![]),
        Ok(list) => {
            let lines = list.iter().map(|o| order_line(ctx, s.lang, o)).collect::<Vec<_>>();
            let waiting: Vec<(OrderId, u32)> = list
                .iter()
                .filter_map(|o| {
                    let queued: u32 = o
                        .jobs
                        .iter()
                        .filter(|(status, _)| *status == JobStatus::Queued)
                        .map(|(_, n)| *n)
                        .sum();
                    (queued > 0).then_some((o.order_id, queued))
                })
                .collect();
            (lines.join("\n"), waiting)
        }
        Err(e) => {
            tracing::warn!(user_id = %s.user_id, error = %e, "recent orders unreadable");
            (t(ctx, s.lang, "bot.account.orders_error").to_owned(), vec![])
        }
    };
    let mut text = tr(ctx, s.lang, "bot.account.orders_title", &[("orders", &text)]);
    if !waiting.is_empty() {
        text.push_str("\n\n");
        text.push_str(t(ctx, s.lang, "bot.account.orders_hint"));
    }
    let kb = keyboards::orders(ctx.texts, s.lang, &waiting);
    send(bot, s, text, Some(kb)).await.map(|_| ())
}

/// The user's referral link and how many friends came and paid; empty without payments or
/// before the bot's username is known.
async fn referral_text(ctx: &BotContext, s: &Session) -> String {
    let (Some(payments), Some(bot)) = (ctx.payments.as_ref(), ctx.bot_username.get()) else {
        return String::new();
    };
    let summary = match payments.payments.referral_summary(s.user_id).await {
        Ok(summary) => summary,
        Err(e) => {
            tracing::warn!(user_id = %s.user_id, error = %e, "referral figures unreadable");
            return String::new();
        }
    };
    let link = crate::payments::referral::link(bot, s.user_id);
    let key = if payments.referral_bonus.get() > 0 {
        "bot.account.referral"
    } else {
        "bot.account.referral_no_bonus"
    };
    tr(
        ctx,
        s.lang,
        key,
        &[
            ("bonus", &payments.referral_bonus.to_string()),
            ("link", &escape_html(&link)),
            ("invited", &summary.invited.to_string()),
            ("paid", &summary.paid.to_string()),
        ],
    )
}

fn order_line(ctx: &BotContext, lang: Language, o: &OrderSummary) -> String {
    let template = template_name(ctx, lang, &o.template);
    let statuses = o
        .jobs
        .iter()
        .map(|(status, n)| format!("{} × {n}", status_text(ctx, lang, *status)))
        .collect::<Vec<_>>()
        .join(", ");
    tr(
        ctx,
        lang,
        "bot.account.order_line",
        &[
            ("order", &o.order_id.to_string()),
            ("date", &o.created_at.format("%d.%m %H:%M").to_string()),
            ("template", &escape_html(&template)),
            ("charged", &o.charged.to_string()),
            ("statuses", &statuses),
        ],
    )
}

fn status_text(ctx: &BotContext, lang: Language, status: JobStatus) -> &str {
    let key = match status {
        JobStatus::Queued => "bot.status.queued",
        JobStatus::Running => "bot.status.running",
        JobStatus::Succeeded => "bot.status.succeeded",
        JobStatus::Failed => "bot.status.failed",
        JobStatus::Cancelled => "bot.status.cancelled",
    };
    ctx.texts.get(lang, key)
}

/// How to top up when no packs are on sale: through support.
pub(super) async fn topup_by_support(bot: &Bot, ctx: &BotContext, s: &Session) -> HandlerResult {
    let key = if ctx.settings.support_url.is_some() {
        "bot.topup.text"
    } else {
        "bot.topup.text_no_support"
    };
    let text = tr(ctx, s.lang, key, &[("id", &s.user_id.to_string())]);
    let kb = keyboards::support_and_menu(ctx.texts, s.lang, &ctx.settings);
    send(bot, s, text, Some(kb)).await.map(|_| ())
}

/// How it works.
pub(super) async fn help(bot: &Bot, ctx: &BotContext, s: &Session) -> HandlerResult {
    let price = ctx.settings.price_per_video.to_string();
    let text = tr(ctx, s.lang, "bot.help.text", &[("price", &price)]);
    send(bot, s, text, Some(keyboards::create_and_menu(ctx.texts, s.lang))).await.map(|_| ())
}
