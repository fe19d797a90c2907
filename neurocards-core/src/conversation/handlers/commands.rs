//! Slash commands. `/start`, `/menu`, `/cancel` work from any step; admin commands answer
//! non-admins exactly like an unknown command.

use super::{account, admin, buy, send, start, t, videos, HandlerResult};
use crate::conversation::command::Command;
use crate::conversation::context::BotContext;
use crate::conversation::keyboards;
use crate::conversation::session::Session;
use std::sync::Arc;
use teloxide::prelude::*;
use teloxide::types::Me;

/// Parses a command addressed to this bot.
pub(in crate::conversation) fn parse(msg: Message, me: Me) -> Option<Command> {
    Command::parse(msg.text()?, me.user.username.as_deref())
}

pub(in crate::conversation) async fn on_command(
    bot: Bot,
    ctx: Arc<BotContext>,
    s: Session,
    command: Command,
) -> HandlerResult {
    match command {
        Command::Start { referrer } => start::on_start(bot, ctx, s, referrer).await,
        Command::Buy => buy::show_packs(&bot, &ctx, &s).await,
        Command::PaySupport => buy::pay_support(&bot, &ctx, &s).await,
        Command::Menu => start::to_menu(&bot, &ctx, &s).await,
        Command::Cancel => {
            send(&bot, &s, t(&ctx, s.lang, "bot.cancelled"), None).await?;
            start::to_menu(&bot, &ctx, &s).await
        }
        Command::Help => account::help(&bot, &ctx, &s).await,
        Command::Account => account::show(&bot, &ctx, &s).await,
        Command::Orders => account::orders(&bot, &ctx, &s).await,
        Command::Videos => videos::gallery(&bot, &ctx, &s, 0).await,
        Command::Language => {
            let other = match s.lang {
                crate::domain::Language::Ru => crate::domain::Language::En,
                crate::domain::Language::En => crate::domain::Language::Ru,
            };
            start::set_language(&bot, &ctx, &s, other).await
        }
        Command::Admin(request) if ctx.is_admin(s.user_id) => {
            admin::run(bot, ctx, s, request).await
        }
        Command::Admin(_) | Command::Unknown => unknown(&bot, &ctx, &s).await,
    }
}

async fn unknown(bot: &Bot, ctx: &BotContext, s: &Session) -> HandlerResult {
    let kb = keyboards::main_menu(ctx.texts, s.lang, &ctx.settings);
    send(bot, s, t(ctx, s.lang, "bot.unknown_command"), Some(kb)).await.map(|_| ())
}
