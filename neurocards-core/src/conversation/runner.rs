//! Running the handler tree: a polling `Dispatcher`, or [`Conversation::handle`] for webhook
//! deliveries (one update at a time per chat, any number of chats at once), and registering the
//! command list with Telegram.

use super::command::{ADMIN_COMMANDS, PUBLIC_COMMANDS};
use super::context::{BotContext, BotCounters};
use super::guards::{self, Claim, Delivery};
use super::handlers::ConversationError;
use super::session::DialogueStorage;
use crate::domain::Language;
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use teloxide::dispatching::{DefaultKey, UpdateHandler};
use teloxide::error_handlers::ErrorHandler;
use teloxide::prelude::*;
use teloxide::types::{AllowedUpdate, BotCommand, BotCommandScope, Me, Recipient};

/// The update types the conversation handles (passed to `setWebhook` and `getUpdates`).
pub const ALLOWED_UPDATES: [AllowedUpdate; 3] =
    [AllowedUpdate::Message, AllowedUpdate::CallbackQuery, AllowedUpdate::PreCheckoutQuery];

/// The dependencies [`super::schema`] needs besides the bot, `Me` and the update.
pub fn dependencies(ctx: Arc<BotContext>, storage: Arc<DialogueStorage>) -> DependencyMap {
    dptree::deps![ctx, storage]
}

/// Logs handler errors with tracing and counts them.
struct TracingErrorHandler {
    ctx: Arc<BotContext>,
}

impl ErrorHandler<ConversationError> for TracingErrorHandler {
    fn handle_error(self: Arc<Self>, error: ConversationError) -> BoxFuture<'static, ()> {
        BotCounters::inc(&self.ctx.counters.handler_errors);
        tracing::error!(error = %error, "update handler failed");
        Box::pin(async {})
    }
}

/// A polling dispatcher for the conversation: updates of one chat run in order, chats run in
/// parallel. Run it with `dispatch_with_listener` and a `Polling` listener built with
/// [`ALLOWED_UPDATES`] (pending updates are kept: never call `drop_pending_updates`).
pub fn dispatcher(
    bot: Bot,
    ctx: Arc<BotContext>,
    storage: Arc<DialogueStorage>,
) -> Dispatcher<Bot, ConversationError, DefaultKey> {
    let errors = Arc::new(TracingErrorHandler { ctx: ctx.clone() });
    Dispatcher::builder(bot, super::schema())
        .dependencies(dependencies(ctx, storage))
        .error_handler(errors)
        .default_handler(|update| async move {
            tracing::debug!(update_id = update.id.0, "update not for the conversation");
        })
        .build()
}

/// The conversation for webhook deliveries: [`Conversation::handle`] runs the handler tree for
/// one update before returning, so the reply is sent within the request. Updates of the same
/// chat are serialised within this process (two replicas rely on idempotent order keys).
pub struct Conversation {
    handler: UpdateHandler<ConversationError>,
    deps: DependencyMap,
    ctx: Arc<BotContext>,
    bot_id: i64,
    chats: Mutex<HashMap<i64, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for Conversation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conversation").finish_non_exhaustive()
    }
}

impl Conversation {
    /// Builds the handler tree with its dependencies. `me` is the bot's own `getMe` answer.
    pub fn new(bot: Bot, me: Me, ctx: Arc<BotContext>, storage: Arc<DialogueStorage>) -> Self {
        let bot_id = me.user.id.0 as i64;
        let mut deps = dependencies(ctx.clone(), storage);
        deps.insert(bot);
        deps.insert(me);
        let handler = super::handlers();
        dptree::type_check(handler.sig(), &deps, &[dptree::Type::of::<Update>()]);
        Self { handler, deps, ctx, bot_id, chats: Mutex::new(HashMap::new()) }
    }

    /// Handles one update to the end (replies sent, state stored), once: the update is claimed
    /// first (see [`super::UpdateClaims`]) and a redelivered one is skipped. Handler errors are
    /// logged and counted; the answer is [`Delivery::Retry`] only when the claim could not be
    /// recorded, in which case nothing was done.
    pub async fn handle(&self, update: Update) -> Delivery {
        match guards::claim(&self.ctx, self.bot_id, i64::from(update.id.0)).await {
            Claim::First => {}
            Claim::Repeat => return Delivery::Done,
            Claim::Unavailable => return Delivery::Retry,
        }
        let chat = update.chat().map(|c| c.id.0).or_else(|| update.from().map(|u| u.id.0 as i64));
        let lock = chat.map(|c| self.chat_lock(c));
        let guard = match &lock {
            Some(l) => Some(l.lock().await),
            None => None,
        };
        let mut deps = self.deps.clone();
        let update_id = update.id.0;
        deps.insert(update);
        match self.handler.dispatch(deps).await {
            ControlFlow::Break(Ok(())) => {}
            ControlFlow::Break(Err(error)) => {
                BotCounters::inc(&self.ctx.counters.handler_errors);
                tracing::error!(update_id, error = %error, "update handler failed");
            }
            ControlFlow::Continue(_) => {
                tracing::debug!(update_id, "update not for the conversation");
            }
        }
        drop(guard);
        if let (Some(chat), Some(lock)) = (chat, lock) {
            self.release_chat_lock(chat, lock);
        }
        Delivery::Done
    }

    fn chat_lock(&self, chat: i64) -> Arc<tokio::sync::Mutex<()>> {
        let mut chats = self.chats.lock().unwrap_or_else(|p| p.into_inner());
        chats.entry(chat).or_default().clone()
    }

    fn release_chat_lock(&self, chat: i64, lock: Arc<tokio::sync::Mutex<()>>) {
        let mut chats = self.chats.lock().unwrap_or_else(|p| p.into_inner());
        // Two references: ours and the map's. Nobody else waits, so the entry can go.
        if Arc::strong_count(&lock) == 2 {
            chats.remove(&chat);
        }
    }
}

/// Registers the command list with Telegram: the public commands for everyone (Russian and
/// English), plus the admin commands in each admin's own chat.
pub async fn register_commands(bot: &Bot, ctx: &BotContext) -> Result<(), teloxide::RequestError> {
    let list = |lang: Language, admin: bool| -> Vec<BotCommand> {
        PUBLIC_COMMANDS
            .iter()
            .chain(if admin { ADMIN_COMMANDS.as_slice() } else { &[] })
            .map(|(name, key)| BotCommand::new(*name, ctx.texts.get(lang, key)))
            .collect()
    };
    bot.set_my_commands(list(Language::Ru, false)).await?;
    bot.set_my_commands(list(Language::En, false)).language_code("en").await?;
    for admin in &ctx.settings.admin_ids {
        let scope = BotCommandScope::Chat { chat_id: Recipient::Id(ChatId(admin.get())) };
        bot.set_my_commands(list(Language::Ru, true)).scope(scope).await?;
    }
    Ok(())
}
