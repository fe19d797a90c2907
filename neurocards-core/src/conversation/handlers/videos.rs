//! "Send the video" under a video offer: the worker sends an offer instead of the video when an
//! earlier send of it may already have arrived; the user asks for the video with this button.

use super::{unavailable, ConversationError};
use crate::conversation::context::BotContext;
use crate::conversation::session::Session;
use crate::domain::JobId;
use crate::telegram::keyboards::video_keyboard;
use crate::telegram::{NotifyTexts, PARSE_MODE};
use teloxide::prelude::*;
use teloxide::types::{InputFile, MaybeInaccessibleMessage};
use teloxide::RequestError;

/// Sends the video of `job_id` to its owner, by URL (Telegram fetches it), or as a link when
/// Telegram cannot use the URL; then takes the button off the offer so it does not invite a
/// second copy. `Ok(false)` when the job is not the user's or has no video (a stale or forged
/// button): nothing is sent.
pub(super) async fn send_again(
    bot: &Bot,
    ctx: &BotContext,
    s: &Session,
    job_id: JobId,
    offer: Option<&MaybeInaccessibleMessage>,
) -> Result<bool, ConversationError> {
    let job = match ctx.queue.job(job_id).await {
        Ok(job) => job,
        Err(e) => {
            tracing::warn!(user_id = %s.user_id, job_id = %job_id, error = %e, "job unreadable");
            unavailable(bot, ctx, s).await?;
            return Ok(true);
        }
    };
    let Some(job) = job.filter(|j| j.user_id == s.user_id) else { return Ok(false) };
    let Some(url) = job.progress.video_url.as_deref().and_then(|u| url::Url::parse(u).ok()) else {
        return Ok(false);
    };
    let texts = NotifyTexts::new(ctx.texts);
    let caption = texts.video_caption(s.lang, 1, 1);
    let keyboard = video_keyboard(&texts, s.lang, job.spec.product_id);
    let sent = bot
        .send_video(s.chat, InputFile::url(url.clone()))
        .caption(caption)
        .parse_mode(PARSE_MODE)
        .supports_streaming(true)
        .reply_markup(keyboard.clone())
        .await;
    match sent {
        Ok(_) => {}
        // Telegram could not fetch or use the file: the link still reaches the user.
        Err(RequestError::Api(api)) => {
            tracing::info!(job_id = %job_id, error = %api, "video not sent by URL; sending the link");
            bot.send_message(s.chat, texts.video_link(s.lang, url.as_str()))
                .parse_mode(PARSE_MODE)
                .reply_markup(keyboard)
                .await?;
        }
        Err(e) => return Err(e.into()),
    }
    if let Some(message) = offer {
        let _ = bot.edit_message_reply_markup(message.chat().id, message.id()).await;
    }
    tracing::info!(user_id = %s.user_id, job_id = %job_id, "video sent on request");
    Ok(true)
}
