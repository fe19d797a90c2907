//! Admin commands (users in `ADMIN_IDS` only; the caller checks): statistics, grants, balance
//! look-ups, bans and a throttled broadcast.

use super::{send, t, tr, HandlerResult};
use crate::conversation::command::AdminCommand;
use crate::conversation::context::{BotContext, BotCounters, TodayStats};
use crate::conversation::session::Session;
use crate::domain::{LedgerReason, UserId};
use crate::i18n::escape_html;
use crate::ports::CancelScope;
use std::sync::Arc;
use teloxide::prelude::*;

pub(super) async fn run(
    bot: Bot,
    ctx: Arc<BotContext>,
    s: Session,
    request: Result<AdminCommand, &'static str>,
) -> HandlerResult {
    let command = match request {
        Ok(c) => c,
        Err(usage) => return send(&bot, &s, t(&ctx, s.lang, usage), None).await.map(|_| ()),
    };
    tracing::info!(admin = %s.user_id, command = ?command, "admin command");
    let text = match command {
        AdminCommand::Stats => stats(&ctx, &s).await,
        AdminCommand::Grant { user, amount, note } => {
            match ctx.accounts.user(user).await {
                Ok(Some(target)) => {
                    let note = if note.is_empty() { format!("admin {}", s.user_id) } else { note };
                    match ctx.accounts.credit(user, amount, LedgerReason::Grant, &note).await {
                        Ok(balance) => {
                            let notice = tr(
                                &ctx,
                                target.language,
                                "bot.admin.grant_notice",
                                &[
                                    ("amount", &amount.to_string()),
                                    ("balance", &balance.to_string()),
                                ],
                            );
                            // Best effort: the grant stands even if the user blocked the bot.
                            let _ = bot.send_message(ChatId(user.get()), notice).await;
                            tr(
                                &ctx,
                                s.lang,
                                "bot.admin.granted",
                                &[
                                    ("amount", &amount.to_string()),
                                    ("user", &user.to_string()),
                                    ("balance", &balance.to_string()),
                                ],
                            )
                        }
                        Err(e) => error_text(&ctx, &s, &e),
                    }
                }
                Ok(None) => unknown_user(&ctx, &s, user),
                Err(e) => error_text(&ctx, &s, &e),
            }
        }
        AdminCommand::Balance { user } => {
            let (account, balance, reason) = tokio::join!(
                ctx.accounts.user(user),
                ctx.accounts.balance(user),
                ctx.accounts.ban_reason(user)
            );
            match (account, balance) {
                (Ok(Some(u)), Ok(balance)) => tr(
                    &ctx,
                    s.lang,
                    "bot.admin.balance",
                    &[
                        ("user", &user.to_string()),
                        (
                            "name",
                            &escape_html(
                                u.username.as_deref().or(u.first_name.as_deref()).unwrap_or("-"),
                            ),
                        ),
                        ("balance", &balance.to_string()),
                        ("language", u.language.as_str()),
                        ("banned", &banned_text(&ctx, &s, u.banned, reason)),
                        (
                            "consent",
                            &u.consent_at.map(|c| c.to_rfc3339()).unwrap_or_else(|| "-".into()),
                        ),
                    ],
                ),
                (Ok(None), _) => unknown_user(&ctx, &s, user),
                (Err(e), _) | (_, Err(e)) => error_text(&ctx, &s, &e),
            }
        }
        AdminCommand::Ban { user, reason } => ban(&ctx, &s, user, &reason).await,
        AdminCommand::Unban { user } => unban(&ctx, &s, user).await,
        AdminCommand::Refund { charge_id } => refund(&bot, &ctx, &s, &charge_id).await,
        AdminCommand::UnblockKeys { key } => match &ctx.keys {
            Some(keys) => match keys.lift(key.as_deref()).await {
                Ok(n) => tr(&ctx, s.lang, "bot.admin.keys_unblocked", &[("count", &n.to_string())]),
                Err(e) => error_text(&ctx, &s, &e),
            },
            None => t(&ctx, s.lang, "bot.admin.none").to_owned(),
        },
        AdminCommand::Broadcast { text } => {
            let started = crate::conversation::broadcast::start_broadcast(
                bot.clone(),
                ctx.clone(),
                s.chat,
                s.lang,
                text,
            )
            .await;
            match started {
                Ok(()) => t(&ctx, s.lang, "bot.admin.broadcast_started").to_owned(),
                Err(e) => error_text(&ctx, &s, &e),
            }
        }
    };
    send(&bot, &s, text, None).await.map(|_| ())
}

/// "no", or "yes, reason: …" (the reason unreadable or not given reads as "not given").
fn banned_text(
    ctx: &BotContext,
    s: &Session,
    banned: bool,
    reason: Result<Option<String>, crate::ports::AccountsError>,
) -> String {
    if !banned {
        return t(ctx, s.lang, "bot.admin.no").to_owned();
    }
    let reason = match reason {
        Ok(Some(r)) => escape_html(&r),
        Ok(None) | Err(_) => t(ctx, s.lang, "bot.admin.no_reason").to_owned(),
    };
    tr(ctx, s.lang, "bot.admin.banned_because", &[("reason", &reason)])
}

/// `/ban <user> [reason]`: the ban and its reason are stored first (the user is stopped at
/// once), then the user's waiting videos are cancelled with refund; running ones finish.
async fn ban(ctx: &BotContext, s: &Session, user: UserId, reason: &str) -> String {
    match ctx.accounts.set_banned(user, true, reason).await {
        Ok(true) => {}
        Ok(false) => return unknown_user(ctx, s, user),
        Err(e) => return error_text(ctx, s, &e),
    }
    let shown = match crate::ports::ban_reason_to_store(reason) {
        Some(r) => escape_html(&r),
        None => t(ctx, s.lang, "bot.admin.no_reason").to_owned(),
    };
    let user_text = user.to_string();
    match ctx.queue.cancel_queued(CancelScope::User(user)).await {
        Ok(cancelled) => {
            BotCounters::add(&ctx.counters.jobs_cancelled, cancelled.jobs.len() as u64);
            tr(
                ctx,
                s.lang,
                "bot.admin.banned",
                &[
                    ("user", &user_text),
                    ("reason", &shown),
                    ("cancelled", &cancelled.jobs.len().to_string()),
                    ("refunded", &cancelled.refunded.to_string()),
                    ("running", &cancelled.still_running.to_string()),
                ],
            )
        }
        Err(e) => {
            tracing::warn!(admin = %s.user_id, user_id = %user, error = %e, "waiting jobs of a banned user not cancelled");
            tr(
                ctx,
                s.lang,
                "bot.admin.banned_cancel_failed",
                &[("user", &user_text), ("reason", &shown)],
            )
        }
    }
}

async fn unban(ctx: &BotContext, s: &Session, user: UserId) -> String {
    match ctx.accounts.set_banned(user, false, "").await {
        Ok(true) => tr(ctx, s.lang, "bot.admin.unbanned", &[("user", &user.to_string())]),
        Ok(false) => unknown_user(ctx, s, user),
        Err(e) => error_text(ctx, s, &e),
    }
}

/// `/refund <charge id>`: refunds a Stars payment and takes its pack back (the whole pack or
/// nothing: a user who spent part of it is refused, and the admin is told the balance).
async fn refund(bot: &Bot, ctx: &BotContext, s: &Session, charge_id: &str) -> String {
    use crate::payments::stars::{self, StarsRefund};
    let Some(payments) = ctx.payments.as_ref() else {
        return t(ctx, s.lang, "bot.admin.payments_off").to_owned();
    };
    let charge = escape_html(charge_id);
    match stars::refund(bot, payments, charge_id).await {
        Ok(StarsRefund::Refunded { user_id, debited, shortfall, balance }) => {
            if let Ok(Some(u)) = ctx.accounts.user(user_id).await {
                let text = tr(
                    ctx,
                    u.language,
                    "bot.buy.refunded",
                    &[("credits", &debited.to_string()), ("balance", &balance.to_string())],
                );
                let _ = bot.send_message(ChatId(user_id.get()), text).await;
            }
            tr(
                ctx,
                s.lang,
                "bot.admin.refunded",
                &[
                    ("charge", &charge),
                    ("user", &user_id.to_string()),
                    ("debited", &debited.to_string()),
                    ("shortfall", &shortfall.to_string()),
                    ("balance", &balance.to_string()),
                ],
            )
        }
        Ok(StarsRefund::RefundedUncredited { user_id }) => tr(
            ctx,
            s.lang,
            "bot.admin.refunded_uncredited",
            &[("charge", &charge), ("user", &user_id.to_string())],
        ),
        Ok(StarsRefund::Spent { user_id, credits, balance }) => tr(
            ctx,
            s.lang,
            "bot.admin.refund_spent",
            &[
                ("charge", &charge),
                ("user", &user_id.to_string()),
                ("credits", &credits.to_string()),
                ("balance", &balance.to_string()),
            ],
        ),
        Ok(StarsRefund::AlreadyRefunded) => {
            tr(ctx, s.lang, "bot.admin.refund_already", &[("charge", &charge)])
        }
        Ok(StarsRefund::Unknown) => {
            tr(ctx, s.lang, "bot.admin.refund_unknown", &[("charge", &charge)])
        }
        Ok(StarsRefund::TelegramRefused(e)) => tr(
            ctx,
            s.lang,
            "bot.admin.refund_refused",
            &[("charge", &charge), ("error", &escape_html(&e))],
        ),
        Err(e) => error_text(ctx, s, &e),
    }
}

/// Today's credited purchases, one line per rail, pack and currency.
async fn purchases_today(
    ctx: &BotContext,
    s: &Session,
    since: chrono::DateTime<chrono::Utc>,
) -> String {
    let Some(payments) = ctx.payments.as_ref() else {
        return t(ctx, s.lang, "bot.admin.none").to_owned();
    };
    match payments.payments.tally_since(since).await {
        Ok(list) if list.is_empty() => t(ctx, s.lang, "bot.admin.none").to_owned(),
        Ok(list) => list
            .iter()
            .map(|p| {
                let amount = match p.currency.as_str() {
                    "RUB" => format!("{} ₽", crate::payments::format_rub(p.amount)),
                    "XTR" => format!("{} ⭐", p.amount),
                    other => format!("{} {}", p.amount, escape_html(other)),
                };
                let key = format!("bot.admin.rail.{}", p.rail);
                let rail = t(ctx, s.lang, &key);
                format!("{rail} · {} × {} = {amount}", escape_html(p.pack.as_str()), p.count)
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Err(e) => error_text(ctx, s, &e),
    }
}

fn unknown_user(ctx: &BotContext, s: &Session, user: UserId) -> String {
    tr(ctx, s.lang, "bot.admin.unknown_user", &[("user", &user.to_string())])
}

/// The admin's answer when storage failed: said in the admin's language; the error itself (in
/// English, for the operator) goes to the log.
fn error_text(ctx: &BotContext, s: &Session, error: &dyn std::fmt::Display) -> String {
    tracing::warn!(admin = %s.user_id, error = %error, "admin command failed");
    t(ctx, s.lang, "bot.admin.error").to_owned()
}

/// Today's figures (UTC day) from the queue and, when configured, the stats source.
async fn stats(ctx: &BotContext, s: &Session) -> String {
    let today = crate::conversation::context::today_stats(
        ctx.queue.as_ref(),
        ctx.stats.as_deref(),
        chrono::Utc::now(),
    )
    .await;
    let TodayStats { since, queue, daily } = match today {
        Ok(today) => today,
        Err(e) => return error_text(ctx, s, &e),
    };
    let purchases = purchases_today(ctx, s, since).await;
    let none = t(ctx, s.lang, "bot.admin.none").to_owned();
    let failures = if queue.failed_by_class.is_empty() {
        none.clone()
    } else {
        queue
            .failed_by_class
            .iter()
            .map(|(class, n)| {
                format!("{}: {n}", t(ctx, s.lang, &format!("bot.admin.class.{class}")))
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let keys = key_lines(ctx, s, chrono::Utc::now()).await.unwrap_or(none);
    tr(
        ctx,
        s.lang,
        "bot.admin.stats",
        &[
            ("purchases", &purchases),
            ("users_total", &daily.users_total.to_string()),
            ("users_new", &daily.users_new.to_string()),
            ("orders", &daily.orders.to_string()),
            ("jobs", &daily.jobs.to_string()),
            ("queued", &queue.queued.to_string()),
            ("ready", &queue.ready.to_string()),
            ("running", &queue.running.to_string()),
            ("succeeded", &queue.succeeded.to_string()),
            ("failed", &queue.failed.to_string()),
            ("cancelled", &queue.cancelled.to_string()),
            ("avg_wait", &format!("{:.0}", queue.avg_wait_secs)),
            ("workers", &queue.workers.to_string()),
            ("failures", &failures),
            ("keys", &keys),
        ],
    )
}

/// The `/stats` key block: one line per known key with its state, paused checks and last
/// balance; `None` when there are no keys to show (or their state cannot be read).
async fn key_lines(
    ctx: &BotContext,
    s: &Session,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<String> {
    let records = match ctx.keys.as_ref()?.keys().await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "KIE key state unavailable for /stats");
            return None;
        }
    };
    let lines: Vec<String> = records
        .iter()
        .map(|k| {
            let mut parts = vec![match k.off.filter(|o| o.until > now) {
                Some(off) => tr(
                    ctx,
                    s.lang,
                    &format!("bot.admin.key_{}", off.kind.as_str()),
                    &[
                        ("until", &off.until.format("%Y-%m-%d %H:%M UTC").to_string()),
                        ("class", t(ctx, s.lang, &format!("bot.admin.class.{}", off.class))),
                    ],
                ),
                None => t(ctx, s.lang, "bot.admin.key_healthy").to_owned(),
            }];
            if k.checks_paused_until.is_some_and(|u| u > now) {
                parts.push(t(ctx, s.lang, "bot.admin.key_checks_paused").to_owned());
            }
            if let Some((credits, _)) = k.credits {
                parts.push(tr(
                    ctx,
                    s.lang,
                    "bot.admin.key_credits",
                    &[("credits", &format!("{credits:.0}"))],
                ));
            }
            format!("{}: {}", escape_html(&k.key_id), parts.join(" · "))
        })
        .collect();
    (!lines.is_empty()).then(|| lines.join("\n"))
}
