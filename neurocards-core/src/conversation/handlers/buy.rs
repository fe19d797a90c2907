//! Buying credits: the pack list, the Stars invoice or the YooKassa link, the pre-checkout
//! answer, the successful payment, and `/paysupport`.

use super::{balance, send, t, tr, HandlerResult};
use crate::conversation::action::Action;
use crate::conversation::context::BotContext;
use crate::conversation::keyboards;
use crate::conversation::session::Session;
use crate::domain::{Language, PackId, Rail, UserId};
use crate::payments::checkout::CheckoutError;
use crate::payments::{format_rub, stars, Pack, PaymentRefusal};
use crate::ports::{Charge, ChargeOutcome, ChargeSource};
use std::sync::Arc;
use std::time::Duration;
use teloxide::prelude::*;
use teloxide::types::{
    InlineKeyboardButton, InlineKeyboardMarkup, PreCheckoutQuery, SuccessfulPayment,
};

/// The pre-checkout answer must reach Telegram within 10 s; the check gets at most this long,
/// and is refused ("try again") past it.
const PRE_CHECKOUT_BUDGET: Duration = Duration::from_secs(4);

/// The packs with their prices on each rail, and the balance; or the support text when nothing
/// is on sale.
pub(super) async fn show_packs(bot: &Bot, ctx: &BotContext, s: &Session) -> HandlerResult {
    let Some(payments) = ctx.payments.as_ref().filter(|p| !p.catalogue.is_empty()) else {
        return super::account::topup_by_support(bot, ctx, s).await;
    };
    let balance = match balance(ctx, s).await {
        Ok(b) => b.to_string(),
        Err(_) => t(ctx, s.lang, "bot.account.balance_error").to_owned(),
    };
    let external = ctx.yookassa.as_ref().map(|c| c.rail());
    let mut rows: Vec<Vec<InlineKeyboardButton>> = Vec::new();
    let mut lines = Vec::new();
    for pack in payments.catalogue.iter() {
        lines.push(pack_line(ctx, s.lang, pack));
        let mut row = vec![InlineKeyboardButton::callback(
            tr(
                ctx,
                s.lang,
                "bot.buy.button_stars",
                &[("name", pack.name.get(s.lang)), ("stars", &pack.stars.to_string())],
            ),
            Action::BuyPack { rail: Rail::Stars, pack: pack.id.clone() }.encode(),
        )];
        if let (Some(rail), Some(kopecks)) = (external, pack.rub_kopecks) {
            row.push(InlineKeyboardButton::callback(
                tr(ctx, s.lang, "bot.buy.button_rub", &[("rub", &format_rub(kopecks))]),
                Action::BuyPack { rail, pack: pack.id.clone() }.encode(),
            ));
        }
        rows.push(row);
    }
    rows.push(vec![InlineKeyboardButton::callback(
        t(ctx, s.lang, "common.main_menu"),
        Action::MainMenu.encode(),
    )]);
    let text = tr(
        ctx,
        s.lang,
        "bot.buy.text",
        &[
            ("balance", &balance),
            ("packs", &lines.join("\n")),
            ("price", &ctx.settings.price_per_video.to_string()),
        ],
    );
    send(bot, s, text, Some(InlineKeyboardMarkup::new(rows))).await.map(|_| ())
}

fn pack_line(ctx: &BotContext, lang: Language, pack: &Pack) -> String {
    let rub = pack
        .rub_kopecks
        .filter(|_| ctx.yookassa.is_some())
        .map(|k| tr(ctx, lang, "bot.buy.or_rub", &[("rub", &format_rub(k))]))
        .unwrap_or_default();
    tr(
        ctx,
        lang,
        "bot.buy.pack_line",
        &[
            ("name", pack.name.get(lang)),
            ("credits", &pack.credits.to_string()),
            ("stars", &pack.stars.to_string()),
            ("rub", &rub),
        ],
    )
}

/// A pack button: a Stars invoice now, or (YooKassa) a payment link sent from a task, so that
/// the button is answered at once however long the provider takes.
pub(super) async fn buy(
    bot: &Bot,
    ctx: &BotContext,
    s: &Session,
    rail: Rail,
    pack: PackId,
) -> HandlerResult {
    let Some(payments) = ctx.payments.as_ref() else {
        return super::account::topup_by_support(bot, ctx, s).await;
    };
    if rail != Rail::Stars {
        let Some(checkout) = ctx.yookassa.clone().filter(|c| c.rail() == rail) else {
            return show_packs(bot, ctx, s).await;
        };
        let (bot, chat, lang, texts, user) = (bot.clone(), s.chat, s.lang, ctx.texts, s.user_id);
        let support = keyboards::support_and_menu(texts, lang, &ctx.settings);
        tokio::spawn(async move {
            let (text, kb) = match checkout.start(user, &pack).await {
                Ok(url) => match url::Url::parse(&url) {
                    Ok(link) => (
                        texts.get(lang, "bot.buy.external_link").to_owned(),
                        InlineKeyboardMarkup::new([
                            vec![InlineKeyboardButton::url(
                                texts.get(lang, "bot.buy.pay_button"),
                                link,
                            )],
                            vec![InlineKeyboardButton::callback(
                                texts.get(lang, "common.main_menu"),
                                Action::MainMenu.encode(),
                            )],
                        ]),
                    ),
                    Err(_) => (texts.get(lang, "bot.buy.external_failed").to_owned(), support),
                },
                Err(CheckoutError::NotOnSale(_)) => {
                    (texts.get(lang, "bot.buy.not_on_sale").to_owned(), support)
                }
                Err(e) => {
                    tracing::warn!(user_id = %user, error = %e, "payment link not created");
                    (texts.get(lang, "bot.buy.external_failed").to_owned(), support)
                }
            };
            if let Err(e) = bot.send_message(chat, text).reply_markup(kb).await {
                tracing::warn!(user_id = %user, error = %e, "payment link message not sent");
            }
        });
        return Ok(());
    }
    match payments.open(s.user_id, Rail::Stars, &pack).await {
        Ok((purchase, pack)) => {
            stars::send_invoice(bot, s.chat, &purchase, &pack, ctx.texts, s.lang).await?;
            Ok(())
        }
        Err(crate::payments::OpenPurchaseError::NotOnSale(_)) => {
            send(bot, s, t(ctx, s.lang, "bot.buy.not_on_sale"), None).await?;
            show_packs(bot, ctx, s).await
        }
        Err(crate::payments::OpenPurchaseError::Store(e)) => {
            tracing::warn!(user_id = %s.user_id, error = %e, "purchase not opened");
            super::unavailable(bot, ctx, s).await
        }
    }
}

/// Answers a pre-checkout query within Telegram's deadline: ok only for an open purchase of
/// this user at the current price; otherwise the reason, in the user's language.
pub(in crate::conversation) async fn on_pre_checkout(
    bot: Bot,
    ctx: Arc<BotContext>,
    q: PreCheckoutQuery,
) -> HandlerResult {
    let payer = UserId(q.from.id.0 as i64);
    let lang = Language::from_telegram_code(q.from.language_code.as_deref());
    let verdict = match ctx.payments.as_ref() {
        None => Err(PaymentRefusal::UnknownInvoice),
        Some(payments) => {
            let check = payments.check_payment(
                payer,
                &q.invoice_payload,
                &q.currency,
                i64::from(q.total_amount),
            );
            match tokio::time::timeout(PRE_CHECKOUT_BUDGET, check).await {
                Ok(result) => result.map(|_| ()),
                Err(_) => Err(PaymentRefusal::Unavailable),
            }
        }
    };
    match verdict {
        Ok(()) => {
            bot.answer_pre_checkout_query(q.id, true).await?;
        }
        Err(refusal) => {
            let lang = match ctx.accounts.user(payer).await {
                Ok(Some(u)) => u.language,
                _ => lang,
            };
            bot.answer_pre_checkout_query(q.id, false)
                .error_message(ctx.texts.get(lang, refusal.text_key()))
                .await?;
        }
    }
    Ok(())
}

/// A `successful_payment` message: credit it once (a repeat says nothing), then tell the payer
/// and, on a first purchase through a referral link, the referrer.
pub(in crate::conversation) async fn on_successful_payment(
    bot: Bot,
    ctx: Arc<BotContext>,
    s: Session,
    payment: SuccessfulPayment,
) -> HandlerResult {
    let Some(payments) = ctx.payments.as_ref() else {
        tracing::error!(user_id = %s.user_id, "a payment arrived but payments are not configured");
        return reply_unmatched(&bot, &ctx, &s).await;
    };
    let charge_id = payment.telegram_payment_charge_id.0.clone();
    if charge_id.is_empty() || charge_id.len() > 128 {
        tracing::warn!(user_id = %s.user_id, "a Stars payment with an unusable charge id; left for the operator");
        return reply_unmatched(&bot, &ctx, &s).await;
    }
    // A payload that is not ours is recorded flagged (never ignored): real money arrived.
    let purchase_id = crate::payments::parse_invoice_payload(&payment.invoice_payload)
        .unwrap_or(crate::domain::PurchaseId::UNKNOWN);
    let charge = Charge {
        rail: Rail::Stars,
        charge_id,
        purchase_id,
        user_id: s.user_id,
        amount: i64::from(payment.total_amount),
        currency: payment.currency.clone(),
        source: ChargeSource::Update,
    };
    match payments.apply(&charge).await {
        Ok(ChargeOutcome::Credited { credits, balance, referral, .. }) => {
            let text = tr(
                &ctx,
                s.lang,
                "bot.buy.credited",
                &[("credits", &credits.to_string()), ("balance", &balance.to_string())],
            );
            send(&bot, &s, text, Some(keyboards::create_and_menu(ctx.texts, s.lang))).await?;
            if let Some(r) = referral {
                crate::payments::notify::referrer(&bot, payments, ctx.texts, r.referrer, r.bonus)
                    .await;
            }
        }
        Ok(ChargeOutcome::AlreadyRecorded) => {}
        Ok(ChargeOutcome::Flagged(_)) => reply_unmatched(&bot, &ctx, &s).await?,
        Err(e) => {
            // The payment is Telegram's fact: reconciliation credits it once the store is back.
            tracing::error!(user_id = %s.user_id, purchase_id = %purchase_id, error = %e, "payment not recorded now; reconciliation will credit it");
            send(&bot, &s, t(&ctx, s.lang, "bot.buy.credit_delayed"), None).await?;
        }
    }
    Ok(())
}

/// Tells a payer their payment arrived but could not be matched, with the support link.
async fn reply_unmatched(bot: &Bot, ctx: &BotContext, s: &Session) -> HandlerResult {
    let kb = keyboards::support_and_menu(ctx.texts, s.lang, &ctx.settings);
    send(bot, s, t(ctx, s.lang, "bot.buy.unmatched"), Some(kb)).await.map(|_| ())
}

/// `/paysupport`: who helps with payments and how refunds work.
pub(super) async fn pay_support(bot: &Bot, ctx: &BotContext, s: &Session) -> HandlerResult {
    let text = tr(ctx, s.lang, "bot.buy.paysupport", &[("id", &s.user_id.to_string())]);
    send(bot, s, text, Some(keyboards::support_and_menu(ctx.texts, s.lang, &ctx.settings)))
        .await
        .map(|_| ())
}
