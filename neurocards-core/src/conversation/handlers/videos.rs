//! The user's videos: "Send the video" under a video offer (the worker sends an offer instead
//! of the video when an earlier send of it may already have arrived), and "My videos", a paged
//! gallery of the videos delivered, re-sent by their Telegram file ids.

use super::{send, t, take_buttons_off, template_name, tr, unavailable, ConversationError};
use crate::conversation::context::BotContext;
use crate::conversation::keyboards;
use crate::conversation::session::Session;
use crate::domain::JobId;
use crate::i18n::escape_html;
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
    take_buttons_off(bot, offer).await;
    tracing::info!(user_id = %s.user_id, job_id = %job_id, "video sent on request");
    Ok(true)
}

/// Videos per gallery page.
pub(crate) const GALLERY_PAGE_SIZE: u32 = 3;

/// "My videos", page `page` (0 is the newest): each video re-sent by the file id Telegram gave
/// it at delivery (no download, no expired links), with "Repeat this order" and "New video
/// with this product"; then where the page is, with "Newer" / "Older" and the menu.
#[tracing::instrument(skip_all, fields(user_id = %s.user_id, page))]
pub(super) async fn gallery(
    bot: &Bot,
    ctx: &BotContext,
    s: &Session,
    page: u32,
) -> Result<(), ConversationError> {
    let Some(history) = &ctx.history else { return unavailable(bot, ctx, s).await };
    let mut page = page;
    let found = loop {
        let offset = page.saturating_mul(GALLERY_PAGE_SIZE);
        match history.delivered_videos(s.user_id, offset, GALLERY_PAGE_SIZE).await {
            // A page past the end (fewer videos than the button assumed): the newest instead.
            Ok(found) if found.videos.is_empty() && found.total > 0 && page > 0 => page = 0,
            Ok(found) => break found,
            Err(e) => {
                tracing::warn!(error = %e, "gallery unreadable");
                return unavailable(bot, ctx, s).await;
            }
        }
    };
    if found.videos.is_empty() {
        let kb = keyboards::create_and_menu(ctx.texts, s.lang);
        send(bot, s, t(ctx, s.lang, "bot.videos.empty"), Some(kb)).await?;
        return Ok(());
    }
    let offset = page.saturating_mul(GALLERY_PAGE_SIZE);
    for video in &found.videos {
        let template = template_name(ctx, s.lang, &video.template);
        let caption = tr(
            ctx,
            s.lang,
            "bot.videos.caption",
            &[
                ("order", &video.order_id.to_string()),
                ("date", &video.delivered_at.format("%d.%m.%Y").to_string()),
                ("template", &escape_html(&template)),
            ],
        );
        let kb = keyboards::gallery_video(ctx.texts, s.lang, video.order_id, video.product_id);
        let sent = bot
            .send_video(s.chat, InputFile::file_id(teloxide::types::FileId(video.file_id.clone())))
            .caption(caption)
            .parse_mode(PARSE_MODE)
            .reply_markup(kb.clone())
            .await;
        match sent {
            Ok(_) => {}
            Err(RequestError::Api(e)) => {
                // The file is gone or no longer ours to send: say so, keep the buttons.
                tracing::warn!(job_id = %video.job_id, error = %e, "gallery video not sent");
                let order = video.order_id.to_string();
                let text = tr(ctx, s.lang, "bot.videos.gone", &[("order", &order)]);
                send(bot, s, text, Some(kb)).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let from = u64::from(offset) + 1;
    let to = u64::from(offset) + found.videos.len() as u64;
    let text = tr(
        ctx,
        s.lang,
        "bot.videos.page",
        &[
            ("from", &from.to_string()),
            ("to", &to.to_string()),
            ("total", &found.total.to_string()),
        ],
    );
    let kb = keyboards::gallery_pages(ctx.texts, s.lang, page, to < found.total);
    send(bot, s, text, Some(kb)).await?;
    Ok(())
}
