//! Messages to payers and referrers after a payment is credited away from the chat (by
//! reconciliation, polling or a provider notification). Best effort: a message that cannot be
//! sent is logged, the credit stands.

use super::service::PaymentService;
use crate::domain::{Credits, Language, UserId};
use crate::i18n::Texts;
use teloxide::prelude::*;

async fn language_of(service: &PaymentService, user: UserId) -> Language {
    match service.accounts.user(user).await {
        Ok(Some(u)) => u.language,
        _ => Language::Ru,
    }
}

/// Tells a payer their pack was credited (best effort: a failed message is logged, the credit
/// stands).
pub async fn credited(
    bot: &Bot,
    service: &PaymentService,
    texts: &Texts,
    user: UserId,
    credits: Credits,
    balance: Credits,
) {
    let lang = language_of(service, user).await;
    let text = texts.render(
        lang,
        "bot.buy.credited",
        &[("credits", &credits.to_string()), ("balance", &balance.to_string())],
    );
    if let Err(e) = bot.send_message(ChatId(user.get()), text).await {
        tracing::warn!(user_id = %user, error = %e, "could not tell the payer about the credit");
    }
}

/// Tells a referrer their friend's first purchase earned them a bonus (best effort).
pub async fn referrer(
    bot: &Bot,
    service: &PaymentService,
    texts: &Texts,
    referrer: UserId,
    bonus: Credits,
) {
    let lang = language_of(service, referrer).await;
    let text = texts.render(lang, "bot.referral.bonus", &[("bonus", &bonus.to_string())]);
    if let Err(e) = bot.send_message(ChatId(referrer.get()), text).await {
        tracing::warn!(user_id = %referrer, error = %e, "could not tell the referrer about the bonus");
    }
}
