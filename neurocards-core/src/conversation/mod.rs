//! The Telegram conversation: a teloxide handler tree any bot can mount.
//!
//! Hosts build a [`BotContext`] (ports, templates, settings) and a dialogue storage, then either
//! run [`schema`] in a teloxide `Dispatcher` (polling; see [`dispatcher`]) or feed webhook
//! updates to a [`Conversation`] (see [`crate::web`]). Either way the same handlers run:
//!
//! - a handler never calls the video provider and never waits on generation: it places the
//!   order and returns; the worker owns every message after the order is committed;
//! - every callback query is answered, and unexpected input in any step gets that step's hint;
//! - the dialogue state lives behind teloxide's `Storage`, so a restart loses nothing.

mod action;
pub mod broadcast;
mod command;
mod context;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub(crate) mod dialogue_store;
pub mod flood;
pub mod formats;
mod guards;
mod handlers;
pub mod input;
pub mod keyboards;
mod runner;
mod session;
mod state;

pub use action::{new_order_token, Action, MAX_CALLBACK_BYTES};
pub use command::{AdminCommand, Command, ADMIN_COMMANDS, MAX_GRANT, PUBLIC_COMMANDS};
pub use context::{
    today_stats, BotContext, BotCounters, ConversationSettings, DailyStats, DeliveredVideo,
    OrderHistory, OrderRateLimit, SessionReader, StatsSource, TodayStats, TodayStatsError,
    VideoPage,
};
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub use dialogue_store::DialogueStoreError;
pub use guards::{
    Delivery, MockUpdateClaims, MockUsageQuota, UpdateClaims, UsageQuota, IDEA_REFINE,
    UPDATE_CLAIM_RETENTION,
};
pub use handlers::{ConversationError, HandlerResult};
pub use runner::{dependencies, dispatcher, register_commands, Conversation, ALLOWED_UPDATES};
pub use session::{BotDialogue, DialogueStorage, Session};
pub use state::{Draft, ProductSource, State};

use handlers::{buttons, buy, commands, create, fallback};
use session::LoadError;
use std::sync::Arc;
use teloxide::dispatching::UpdateHandler;
use teloxide::prelude::*;

/// What loading a session gave.
#[derive(Clone)]
enum Loaded {
    Ready(Box<(Session, State)>),
    Unavailable,
}

fn loaded(result: Result<(Session, State), LoadError>) -> Option<Loaded> {
    match result {
        Ok(ready) => Some(Loaded::Ready(Box::new(ready))),
        Err(LoadError::Unavailable) => Some(Loaded::Unavailable),
        Err(LoadError::NotOurs) => None,
    }
}

fn ready(l: Loaded) -> Option<(Session, State)> {
    match l {
        Loaded::Ready(ready) => Some(*ready),
        Loaded::Unavailable => None,
    }
}

/// The whole conversation as one handler tree, read top to bottom: the update's claim (a
/// redelivered update, or one whose claim cannot be recorded, goes no further; see
/// [`UpdateClaims`]), then pre-checkout queries, then messages (a successful payment first, commands next, then by dialogue state, then the step's
/// hint), then button presses.
///
/// Dependencies: `teloxide::Bot`, `teloxide::types::Me`, `Arc<BotContext>` and
/// `Arc<DialogueStorage>` (see [`dependencies`]).
pub fn schema() -> UpdateHandler<ConversationError> {
    dptree::entry()
        .filter_async(|update: Update, me: teloxide::types::Me, ctx: Arc<BotContext>| async move {
            let bot_id = me.user.id.0 as i64;
            guards::claim(&ctx, bot_id, i64::from(update.id.0)).await == guards::Claim::First
        })
        .chain(handlers())
}

/// The handler tree without the claim (webhook deliveries claim before they dispatch, so that a
/// claim that cannot be recorded is answered with a redelivery request).
fn handlers() -> UpdateHandler<ConversationError> {
    let message_steps = dptree::entry()
        // A payment is real money: credited whatever the dialogue step, even for a banned user.
        .branch(Message::filter_successful_payment().endpoint(buy::on_successful_payment))
        .branch(dptree::filter(|s: Session| s.banned()).endpoint(fallback::banned_message))
        .branch(dptree::filter_map(commands::parse).endpoint(commands::on_command))
        .branch(dptree::case![State::AwaitingPhoto].endpoint(create::on_picture))
        // While a link's image waits for "Yes", another photo, file or link replaces it.
        .branch(
            dptree::case![State::ConfirmingLinkPhoto { link, file_id, mime }]
                .filter(|msg: Message| {
                    msg.photo().is_some()
                        || msg.document().is_some()
                        || msg.text().is_some_and(|t| input::find_marketplace_link(t).is_ok())
                })
                .endpoint(create::on_picture),
        )
        // A photo (or image file) sent at the main menu starts a new video with it.
        .branch(
            dptree::case![State::Idle]
                .filter(|msg: Message, s: Session| {
                    s.consented() && (msg.photo().is_some() || msg.document().is_some())
                })
                .endpoint(create::on_picture),
        )
        .branch(
            dptree::case![State::AwaitingDescription { source }].endpoint(create::on_description),
        )
        .branch(
            dptree::case![State::AwaitingWishes { product_id, template }]
                .endpoint(create::on_wishes),
        )
        .branch(
            dptree::case![State::AwaitingIdea { product_id, template, idea }]
                .endpoint(create::on_idea),
        )
        .branch(
            dptree::case![State::ApprovingIdea { product_id, template, idea, prompt }]
                .endpoint(create::on_idea_extension),
        )
        .endpoint(fallback::on_unexpected_message);

    let button_steps = dptree::entry()
        .branch(dptree::filter(|s: Session| s.banned()).endpoint(fallback::banned_callback))
        .branch(
            dptree::filter_map(|q: CallbackQuery| q.data.as_deref().and_then(Action::parse))
                .endpoint(buttons::on_action),
        )
        .endpoint(buttons::on_unknown);

    let messages = Update::filter_message()
        .filter_map_async(
            |msg: Message, ctx: Arc<BotContext>, storage: Arc<DialogueStorage>| async move {
                loaded(session::for_message(&msg, &ctx, storage).await)
            },
        )
        .branch(
            dptree::filter_map(ready)
                .map(|(s, _): (Session, State)| s)
                .map(|(_, state): (Session, State)| state)
                .chain(message_steps),
        )
        .endpoint(fallback::unavailable_message);

    let buttons = Update::filter_callback_query()
        .filter_map_async(
            |q: CallbackQuery, ctx: Arc<BotContext>, storage: Arc<DialogueStorage>| async move {
                loaded(session::for_callback(&q, &ctx, storage).await)
            },
        )
        .branch(
            dptree::filter_map(ready)
                .map(|(s, _): (Session, State)| s)
                .map(|(_, state): (Session, State)| state)
                .chain(button_steps),
        )
        .endpoint(fallback::unavailable_callback);

    // Pre-checkout queries have no chat and no dialogue: answered on their own, at once.
    let pre_checkout = Update::filter_pre_checkout_query().endpoint(buy::on_pre_checkout);

    dptree::entry()
        .inspect(|ctx: Arc<BotContext>, me: teloxide::types::Me| {
            BotCounters::inc(&ctx.counters.updates);
            if let Some(name) = &me.user.username {
                let _ = ctx.bot_username.set(name.clone());
            }
        })
        .branch(pre_checkout)
        // A flood is answered once, then ignored for a pause (payments never are).
        .branch(dptree::filter_map(flood_verdict).endpoint(on_flood))
        .branch(messages)
        .branch(buttons)
}

/// An update over its sender's flood limit.
#[derive(Debug, Clone, Copy)]
struct Flooded(flood::Verdict);

fn flood_verdict(update: Update, ctx: Arc<BotContext>) -> Option<Flooded> {
    let guard = ctx.flood.as_ref()?;
    if let teloxide::types::UpdateKind::Message(msg) = &update.kind {
        if msg.successful_payment().is_some() {
            return None;
        }
    }
    let user = update.from()?;
    match guard.check(crate::domain::UserId(user.id.0 as i64), std::time::Instant::now()) {
        flood::Verdict::Pass => None,
        verdict => Some(Flooded(verdict)),
    }
}

/// The one answer to a flood (the rest is ignored without a reply).
async fn on_flood(
    bot: Bot,
    ctx: Arc<BotContext>,
    update: Update,
    Flooded(verdict): Flooded,
) -> Result<(), ConversationError> {
    BotCounters::inc(&ctx.counters.flood_ignored);
    if verdict != flood::Verdict::Warn {
        return Ok(());
    }
    let user = update.from();
    tracing::info!(user_id = ?user.map(|u| u.id.0), "update flood: pausing the user");
    let lang =
        crate::domain::Language::from_telegram_code(user.and_then(|u| u.language_code.as_deref()));
    let seconds = flood::PAUSE.as_secs().to_string();
    let text = ctx.texts.render(lang, "bot.flood", &[("seconds", &seconds)]);
    match &update.kind {
        teloxide::types::UpdateKind::CallbackQuery(q) => {
            bot.answer_callback_query(q.id.clone()).text(text).show_alert(true).await?;
        }
        _ => {
            if let Some(chat) = update.chat() {
                bot.send_message(chat.id, text).await?;
            }
        }
    }
    Ok(())
}
