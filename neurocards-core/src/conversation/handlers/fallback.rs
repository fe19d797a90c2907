//! Input that does not fit the step: a hint for that step and its buttons again — never
//! silence. Also the banned and storage-unavailable answers.

use super::{send, t, HandlerResult};
use crate::conversation::context::BotContext;
use crate::conversation::keyboards;
use crate::conversation::session::Session;
use crate::conversation::state::State;
use std::sync::Arc;
use teloxide::prelude::*;
use teloxide::types::InlineKeyboardMarkup;

/// The keyboard that belongs with a step's question, so the hint can offer it again.
fn step_keyboard(ctx: &BotContext, s: &Session, state: &State) -> InlineKeyboardMarkup {
    let (texts, lang) = (ctx.texts, s.lang);
    match state {
        State::Idle => keyboards::main_menu(texts, lang, &ctx.settings),
        State::AwaitingConsent => keyboards::consent(texts, lang),
        State::ConfirmingLinkPhoto { .. } => keyboards::link_photo(texts, lang),
        State::ChoosingTemplate { .. } => keyboards::templates(texts, lang, &ctx.templates),
        State::AwaitingWishes { .. } => keyboards::wishes(texts, lang),
        State::ApprovingIdea { .. } => keyboards::idea_review(texts, lang),
        State::ChoosingCount { .. } => keyboards::counts(texts, lang, ctx.settings.price_per_video),
        State::Confirming { draft, count, key } => {
            super::create::summary_keyboard(ctx, lang, draft, *count, key)
        }
        State::AwaitingPhoto | State::AwaitingDescription { .. } | State::AwaitingIdea { .. } => {
            keyboards::menu_only(texts, lang)
        }
    }
}

/// Sends the hint for `state` with the step's buttons.
pub(super) async fn hint(bot: &Bot, ctx: &BotContext, s: &Session, state: &State) -> HandlerResult {
    let kb = step_keyboard(ctx, s, state);
    send(bot, s, t(ctx, s.lang, state.hint_key()), Some(kb)).await.map(|_| ())
}

/// Any message no step handler took.
pub(in crate::conversation) async fn on_unexpected_message(
    bot: Bot,
    ctx: Arc<BotContext>,
    s: Session,
    state: State,
) -> HandlerResult {
    hint(&bot, &ctx, &s, &state).await
}

/// A banned user's message.
pub(in crate::conversation) async fn banned_message(
    bot: Bot,
    ctx: Arc<BotContext>,
    s: Session,
) -> HandlerResult {
    send(&bot, &s, t(&ctx, s.lang, "bot.banned"), None).await.map(|_| ())
}

/// A banned user's button press.
pub(in crate::conversation) async fn banned_callback(
    bot: Bot,
    ctx: Arc<BotContext>,
    s: Session,
    q: CallbackQuery,
) -> HandlerResult {
    bot.answer_callback_query(q.id).text(t(&ctx, s.lang, "bot.banned")).show_alert(true).await?;
    Ok(())
}

/// The session could not be loaded (database down): say so rather than stay silent.
pub(in crate::conversation) async fn unavailable_message(bot: Bot, msg: Message) -> HandlerResult {
    let lang = crate::domain::Language::from_telegram_code(
        msg.from.as_ref().and_then(|u| u.language_code.as_deref()),
    );
    let text = crate::i18n::Texts::builtin().get(lang, "bot.unavailable").to_owned();
    bot.send_message(msg.chat.id, text).await?;
    Ok(())
}

/// The session could not be loaded for a button press.
pub(in crate::conversation) async fn unavailable_callback(
    bot: Bot,
    q: CallbackQuery,
) -> HandlerResult {
    let lang = crate::domain::Language::from_telegram_code(q.from.language_code.as_deref());
    let text = crate::i18n::Texts::builtin().get(lang, "bot.unavailable").to_owned();
    bot.answer_callback_query(q.id).text(text).await?;
    Ok(())
}
