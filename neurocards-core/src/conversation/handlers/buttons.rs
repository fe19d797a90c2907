//! Button presses: the parsed [`Action`] against the dialogue state. Every callback query is
//! answered exactly once, whatever happens.

use super::order::StartOutcome;
use super::{account, buy, create, order, start, t, videos, ConversationError, HandlerResult};
use crate::conversation::action::Action;
use crate::conversation::context::{BotContext, BotCounters};
use crate::conversation::session::Session;
use crate::conversation::state::State;
use std::sync::Arc;
use teloxide::prelude::*;

/// The answer to a button press.
enum Answer {
    /// A silent acknowledgement.
    Ack,
    /// A short toast.
    Toast(String),
}

/// Handles a parsed button press and answers the callback query.
pub(in crate::conversation) async fn on_action(
    bot: Bot,
    ctx: Arc<BotContext>,
    s: Session,
    state: State,
    q: CallbackQuery,
    action: Action,
) -> HandlerResult {
    let outcome = run(&bot, &ctx, &s, &state, &q, action).await;
    let answer = match &outcome {
        Ok(a) => a,
        Err(_) => &Answer::Toast(t(&ctx, s.lang, "bot.unavailable").to_owned()),
    };
    if let Answer::Toast(_) = answer {
        BotCounters::inc(&ctx.counters.stale_buttons);
    }
    answer_query(&bot, &q, answer).await?;
    outcome.map(|_| ())
}

async fn answer_query(bot: &Bot, q: &CallbackQuery, answer: &Answer) -> HandlerResult {
    let req = bot.answer_callback_query(q.id.clone());
    match answer {
        Answer::Ack => req.await?,
        Answer::Toast(text) => req.text(text.clone()).await?,
    };
    Ok(())
}

/// Answers a press whose data this bot does not know (or no longer sends).
pub(in crate::conversation) async fn on_unknown(
    bot: Bot,
    ctx: Arc<BotContext>,
    s: Session,
    q: CallbackQuery,
) -> HandlerResult {
    tracing::info!(user_id = %s.user_id, data = ?q.data, "unknown button");
    BotCounters::inc(&ctx.counters.stale_buttons);
    answer_query(&bot, &q, &Answer::Toast(t(&ctx, s.lang, "bot.stale_button").to_owned())).await
}

async fn run(
    bot: &Bot,
    ctx: &BotContext,
    s: &Session,
    state: &State,
    q: &CallbackQuery,
    action: Action,
) -> Result<Answer, ConversationError> {
    let stale = || Answer::Toast(t(ctx, s.lang, "bot.stale_button").to_owned());
    let handled = |ok: bool| if ok { Answer::Ack } else { stale() };
    Ok(match action {
        Action::AcceptTerms => {
            start::on_accept_terms(bot, ctx, s).await?;
            Answer::Ack
        }
        Action::MainMenu => {
            start::to_menu(bot, ctx, s).await?;
            Answer::Ack
        }
        Action::CreateVideo => {
            create::begin(bot, ctx, s).await?;
            Answer::Ack
        }
        Action::Account => {
            account::show(bot, ctx, s).await?;
            Answer::Ack
        }
        Action::Format(change) => handled(create::on_format(bot, ctx, s, state, change).await?),
        Action::MyVideos { page } => {
            videos::gallery(bot, ctx, s, page).await?;
            Answer::Ack
        }
        Action::Help => {
            account::help(bot, ctx, s).await?;
            Answer::Ack
        }
        Action::TopUp => {
            buy::show_packs(bot, ctx, s).await?;
            Answer::Ack
        }
        Action::BuyPack { rail, pack } => {
            buy::buy(bot, ctx, s, rail, pack).await?;
            Answer::Ack
        }
        Action::SetLanguage(lang) => {
            start::set_language(bot, ctx, s, lang).await?;
            Answer::Ack
        }
        Action::Template(id) => handled(create::on_template(bot, ctx, s, state, id).await?),
        Action::SkipWishes => handled(create::skip_wishes(bot, ctx, s, state).await?),
        Action::CancelOrder { order_id } => {
            let pressed = q.message.as_ref();
            match order::on_cancel_order(bot, ctx, s, order_id, pressed).await? {
                order::CancelOutcome::Cancelled => Answer::Ack,
                order::CancelOutcome::Nothing => {
                    Answer::Toast(t(ctx, s.lang, "bot.order.nothing_to_cancel").to_owned())
                }
                order::CancelOutcome::Unavailable => {
                    Answer::Toast(t(ctx, s.lang, "bot.order.cancel_unavailable").to_owned())
                }
            }
        }
        Action::ConfirmLinkPhoto => {
            handled(create::on_link_photo_confirmed(bot, ctx, s, state.clone()).await?)
        }
        Action::ApproveIdea => handled(create::on_idea_button(bot, ctx, s, state, true).await?),
        Action::ExtendIdea => handled(create::on_idea_button(bot, ctx, s, state, false).await?),
        Action::Count(count) => handled(create::on_count(bot, ctx, s, state, count).await?),
        Action::Start { key } => {
            match order::on_start_order(bot, ctx, s, state, &key, q.message.as_ref()).await? {
                StartOutcome::Done => Answer::Ack,
                StartOutcome::Stale => stale(),
            }
        }
        Action::MakeAnother { product_id } => {
            create::make_another(bot, ctx, s, product_id).await?;
            Answer::Ack
        }
        Action::Retry { order_id } => {
            create::retry(bot, ctx, s, order_id).await?;
            Answer::Ack
        }
        Action::SendVideo { job_id } => {
            handled(videos::send_again(bot, ctx, s, job_id, q.message.as_ref()).await?)
        }
    })
}
