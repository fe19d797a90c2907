//! `/start`, consent to the terms, the welcome demo, the main menu and the language switch.

use super::{balance, send, set_state, t, tr, unavailable, HandlerResult};
use crate::conversation::context::BotContext;
use crate::conversation::keyboards;
use crate::conversation::session::Session;
use crate::conversation::state::State;
use crate::domain::{Language, UserId};
use crate::ports::{NewUser, User};
use teloxide::prelude::*;
use teloxide::types::{FileId, InputFile, InputMedia, InputMediaVideo};

/// Most demo videos sent at once (Telegram's media-group limit).
const MAX_WELCOME_VIDEOS: usize = 10;

/// Registers the user if needed (crediting `START_CREDITS` once); `None` when storage failed.
pub(super) async fn ensure_registered(ctx: &BotContext, s: &Session) -> Option<User> {
    ensure_registered_with(ctx, s, None).await
}

/// Registers the user; a user created now through a referral link is recorded as referred
/// (once, never by themselves; a failure to record it is logged and does not stop `/start`).
async fn ensure_registered_with(
    ctx: &BotContext,
    s: &Session,
    referrer: Option<UserId>,
) -> Option<User> {
    let new = NewUser {
        id: s.user_id,
        username: s.username.clone(),
        first_name: Some(s.first_name.clone()),
        language: s.lang,
    };
    match ctx.accounts.register(&new, ctx.settings.start_credits).await {
        Ok((user, created)) => {
            if created {
                tracing::info!(user_id = %s.user_id, "user registered");
                if let (Some(referrer), Some(payments)) = (referrer, ctx.payments.as_ref()) {
                    match payments.payments.record_referral(s.user_id, referrer).await {
                        Ok(true) => {
                            tracing::info!(user_id = %s.user_id, referrer = %referrer, "referral recorded")
                        }
                        Ok(false) => {}
                        Err(e) => {
                            tracing::warn!(user_id = %s.user_id, error = %e, "referral not recorded")
                        }
                    }
                }
            }
            Some(user)
        }
        Err(e) => {
            tracing::error!(user_id = %s.user_id, error = %e, "registration failed");
            None
        }
    }
}

/// `/start`: register, ask for consent once, else the main menu.
pub(super) async fn on_start(
    bot: Bot,
    ctx: std::sync::Arc<BotContext>,
    s: Session,
    referrer: Option<UserId>,
) -> HandlerResult {
    let Some(user) = ensure_registered_with(&ctx, &s, referrer).await else {
        return unavailable(&bot, &ctx, &s).await;
    };
    let s = Session { lang: user.language, account: Some(user), ..s };
    if s.consented() {
        set_state(&s, State::Idle).await?;
        show_menu(&bot, &ctx, &s).await
    } else {
        ask_consent(&bot, &ctx, &s).await
    }
}

/// Shows the terms with "I accept".
pub(super) async fn ask_consent(bot: &Bot, ctx: &BotContext, s: &Session) -> HandlerResult {
    set_state(s, State::AwaitingConsent).await?;
    let text = match &ctx.settings.terms_url {
        Some(url) => tr(ctx, s.lang, "bot.consent.text", &[("terms", url.as_str())]),
        None => t(ctx, s.lang, "bot.consent.text_no_link").to_owned(),
    };
    send(bot, s, text, Some(keyboards::consent(ctx.texts, s.lang))).await.map(|_| ())
}

/// "I accept": consent stored once with its time, then the demo, the welcome text and the menu.
pub(super) async fn on_accept_terms(bot: &Bot, ctx: &BotContext, s: &Session) -> HandlerResult {
    let first_time = !s.consented();
    if s.account.is_none() && ensure_registered(ctx, s).await.is_none() {
        return unavailable(bot, ctx, s).await;
    }
    if let Err(e) = ctx.accounts.record_consent(s.user_id).await {
        tracing::error!(user_id = %s.user_id, error = %e, "consent not stored");
        return unavailable(bot, ctx, s).await;
    }
    set_state(s, State::Idle).await?;
    if first_time {
        send_welcome_videos(bot, ctx, s).await;
        if let Ok(balance) = balance(ctx, s).await {
            let text = tr(ctx, s.lang, "bot.welcome.text", &[("balance", &balance.to_string())]);
            send(bot, s, text, None).await?;
        }
    }
    show_menu(bot, ctx, s).await
}

/// The demo videos by file id; a failure is logged and the onboarding goes on.
async fn send_welcome_videos(bot: &Bot, ctx: &BotContext, s: &Session) {
    let ids: Vec<&String> =
        ctx.settings.welcome_video_ids.iter().take(MAX_WELCOME_VIDEOS).collect();
    let result = match ids.as_slice() {
        [] => return,
        [one] => {
            bot.send_video(s.chat, InputFile::file_id(FileId((*one).clone()))).await.map(|_| ())
        }
        many => {
            let media = many.iter().map(|id| {
                InputMedia::Video(InputMediaVideo::new(InputFile::file_id(FileId((*id).clone()))))
            });
            bot.send_media_group(s.chat, media).await.map(|_| ())
        }
    };
    if let Err(e) = result {
        tracing::warn!(user_id = %s.user_id, error = %e, "welcome videos not sent");
    }
}

/// The main menu with the balance (or without it when it cannot be read — never a false zero).
pub(super) async fn show_menu(bot: &Bot, ctx: &BotContext, s: &Session) -> HandlerResult {
    let price = ctx.settings.price_per_video.to_string();
    let text = match balance(ctx, s).await {
        Ok(balance) => tr(
            ctx,
            s.lang,
            "bot.menu.text",
            &[("price", &price), ("balance", &balance.to_string())],
        ),
        Err(_) => tr(ctx, s.lang, "bot.menu.text_no_balance", &[("price", &price)]),
    };
    let kb = keyboards::main_menu(ctx.texts, s.lang, &ctx.settings);
    send(bot, s, text, Some(kb)).await.map(|_| ())
}

/// Leaves any step: state back to idle, main menu shown.
pub(super) async fn to_menu(bot: &Bot, ctx: &BotContext, s: &Session) -> HandlerResult {
    set_state(s, State::Idle).await?;
    show_menu(bot, ctx, s).await
}

/// Switches the language, stores it and shows the menu in it.
pub(super) async fn set_language(
    bot: &Bot,
    ctx: &BotContext,
    s: &Session,
    lang: Language,
) -> HandlerResult {
    if s.account.is_some() {
        if let Err(e) = ctx.accounts.set_language(s.user_id, lang).await {
            tracing::warn!(user_id = %s.user_id, error = %e, "language not stored");
            return unavailable(bot, ctx, s).await;
        }
    }
    let s = Session { lang, ..s.clone() };
    send(bot, &s, t(ctx, lang, "bot.language.switched"), None).await?;
    to_menu(bot, ctx, &s).await
}
