//! The create-video flow: picture, description, template, wishes or own idea, count, summary.

use super::{balance_line, balance_line_at, send, set_state, t, tr, unavailable, HandlerResult};
use crate::conversation::action::new_order_token;
use crate::conversation::context::{BotContext, BotCounters};
use crate::conversation::formats::FormatChange;
use crate::conversation::guards::IDEA_REFINE;
use crate::conversation::input::{self, PictureRejection, TextRejection};
use crate::conversation::keyboards;
use crate::conversation::session::Session;
use crate::conversation::state::{Draft, ProductSource, State};
use crate::domain::{
    Credits, ImageMime, Language, OrderId, ProductId, TemplateId, VideoCount, VideoFormat,
};
use crate::i18n::escape_html;
use crate::ports::{NewProduct, PhotoRef};
use crate::templates::TemplateKind;
use std::sync::Arc;
use std::time::Duration;
use teloxide::prelude::*;
use teloxide::types::{ChatAction, InlineKeyboardMarkup, InputFile, ParseMode};

/// "Create video": consent first, then the photo question with its rules.
pub(super) async fn begin(bot: &Bot, ctx: &BotContext, s: &Session) -> HandlerResult {
    if !s.consented() {
        return super::start::ask_consent(bot, ctx, s).await;
    }
    set_state(s, State::AwaitingPhoto).await?;
    ask_photo(bot, ctx, s).await
}

async fn ask_photo(bot: &Bot, ctx: &BotContext, s: &Session) -> HandlerResult {
    let line = balance_line(ctx, s).await;
    let text = tr(ctx, s.lang, "bot.create.ask_photo", &[("balance_line", &line)]);
    send(bot, s, text, Some(keyboards::menu_only(ctx.texts, s.lang))).await.map(|_| ())
}

/// What the message offers as the product's picture.
fn picture_of(msg: &Message) -> Result<ProductSource, PictureRejection> {
    if let Some(sizes) = msg.photo() {
        let largest = sizes.iter().max_by_key(|p| u64::from(p.width) * u64::from(p.height));
        let photo = largest.ok_or(PictureRejection::NotAPicture)?;
        let mime = input::check_photo(u64::from(photo.file.size))?;
        return Ok(ProductSource::Photo { file_id: photo.file.id.0.clone(), mime, link: None });
    }
    if let Some(doc) = msg.document() {
        let mime = doc.mime_type.as_ref().map(|m| m.essence_str().to_owned());
        let mime = input::check_image_file(mime.as_deref(), u64::from(doc.file.size))?;
        return Ok(ProductSource::Photo { file_id: doc.file.id.0.clone(), mime, link: None });
    }
    if let Some(text) = msg.text() {
        let url = input::find_marketplace_link(text)?;
        return Ok(ProductSource::Link { url });
    }
    Err(PictureRejection::NotAPicture)
}

/// The photo step: a photo, an image file or a marketplace link; anything else gets a specific
/// message and the question again.
pub(in crate::conversation) async fn on_picture(
    bot: Bot,
    ctx: Arc<BotContext>,
    s: Session,
    msg: Message,
) -> HandlerResult {
    match picture_of(&msg) {
        Ok(ProductSource::Link { url }) => from_link(&bot, &ctx, &s, url).await,
        Ok(source) => ask_description(&bot, &ctx, &s, source).await,
        Err(rejection) => {
            let text = match rejection {
                PictureRejection::WrongType { mime } => {
                    let mime = escape_html(mime.as_deref().unwrap_or("?"));
                    tr(&ctx, s.lang, "bot.create.photo_wrong_type", &[("mime", &mime)])
                }
                PictureRejection::TooLarge { bytes } => {
                    let mb = format!("{:.1}", bytes as f64 / (1024.0 * 1024.0));
                    tr(&ctx, s.lang, "bot.create.photo_too_large", &[("size_mb", &mb)])
                }
                PictureRejection::UnsupportedLink => {
                    t(&ctx, s.lang, "bot.create.link_unsupported").to_owned()
                }
                PictureRejection::NotAPicture => {
                    t(&ctx, s.lang, "bot.create.not_a_picture").to_owned()
                }
            };
            send(&bot, &s, text, None).await?;
            ask_photo(&bot, &ctx, &s).await
        }
    }
}

/// Stores the picture in the dialogue and asks for the description.
async fn ask_description(
    bot: &Bot,
    ctx: &BotContext,
    s: &Session,
    source: ProductSource,
) -> HandlerResult {
    let linked = matches!(source, ProductSource::Photo { link: Some(_), .. });
    set_state(s, State::AwaitingDescription { source }).await?;
    let mut text = String::new();
    if linked {
        text.push_str(t(ctx, s.lang, "bot.create.link_accepted"));
        text.push_str("\n\n");
    }
    text.push_str(t(ctx, s.lang, "bot.create.ask_description"));
    send(bot, s, text, Some(keyboards::menu_only(ctx.texts, s.lang))).await.map(|_| ())
}

/// A marketplace link: its main product image is fetched and shown for confirmation; nothing
/// is stored or charged until the seller accepts it. Without an image the seller is asked for
/// a photo.
async fn from_link(bot: &Bot, ctx: &BotContext, s: &Session, link: String) -> HandlerResult {
    let image = match (&ctx.marketplace, url::Url::parse(&link)) {
        (Some(marketplace), Ok(url)) => {
            // Only a hint to the user; the fetch goes on whatever this answers.
            let _ = bot.send_chat_action(s.chat, ChatAction::UploadPhoto).await;
            marketplace.product_image(&url).await.map_err(|e| {
                tracing::warn!(user_id = %s.user_id, error = %e, "no product image from a link");
            })
        }
        _ => Err(()),
    };
    let shown = match image {
        Ok(image) => {
            let ext = image.mime.extension();
            let file = InputFile::memory(image.bytes).file_name(format!("product.{ext}"));
            let sent = bot
                .send_photo(s.chat, file)
                .caption(t(ctx, s.lang, "bot.create.link_confirm"))
                .parse_mode(ParseMode::Html)
                .reply_markup(keyboards::link_photo(ctx.texts, s.lang))
                .await;
            match sent {
                // Telegram keeps photos as JPEG; the largest size is the one to animate.
                Ok(sent) => sent
                    .photo()
                    .and_then(|sizes| {
                        sizes.iter().max_by_key(|p| u64::from(p.width) * u64::from(p.height))
                    })
                    .map(|p| p.file.id.0.clone()),
                Err(e) => {
                    tracing::warn!(user_id = %s.user_id, error = %e, "product image not shown");
                    None
                }
            }
        }
        Err(()) => None,
    };
    let Some(file_id) = shown else {
        set_state(s, State::AwaitingPhoto).await?;
        let kb = keyboards::menu_only(ctx.texts, s.lang);
        return send(bot, s, t(ctx, s.lang, "bot.create.link_no_image"), Some(kb))
            .await
            .map(|_| ());
    };
    set_state(s, State::ConfirmingLinkPhoto { link, file_id, mime: ImageMime::Jpeg }).await
}

/// "Yes, use this image": the confirmed image is the product's picture. Returns `false` when
/// no image is waiting for confirmation (a stale button).
pub(super) async fn on_link_photo_confirmed(
    bot: &Bot,
    ctx: &BotContext,
    s: &Session,
    state: State,
) -> Result<bool, super::ConversationError> {
    let State::ConfirmingLinkPhoto { link, file_id, mime } = state else { return Ok(false) };
    let source = ProductSource::Photo { file_id, mime, link: Some(link) };
    ask_description(bot, ctx, s, source).await?;
    Ok(true)
}

/// Tells the user why a free text was refused.
async fn reject_text(
    bot: &Bot,
    ctx: &BotContext,
    s: &Session,
    why: TextRejection,
) -> HandlerResult {
    let text = match why {
        TextRejection::TooShort { min } => {
            tr(ctx, s.lang, "bot.text_too_short", &[("min", &min.to_string())])
        }
        TextRejection::TooLong { chars, max } => tr(
            ctx,
            s.lang,
            "bot.text_too_long",
            &[("chars", &chars.to_string()), ("max", &max.to_string())],
        ),
    };
    send(bot, s, text, None).await.map(|_| ())
}

/// The description step: stored as a product the user can reuse.
pub(in crate::conversation) async fn on_description(
    bot: Bot,
    ctx: Arc<BotContext>,
    s: Session,
    msg: Message,
    source: ProductSource,
) -> HandlerResult {
    let Some(text) = msg.text() else {
        return super::fallback::hint(&bot, &ctx, &s, &State::AwaitingDescription { source }).await;
    };
    let description =
        match input::check_text(text, input::MIN_DESCRIPTION_CHARS, input::MAX_DESCRIPTION_CHARS) {
            Ok(d) => d,
            Err(why) => return reject_text(&bot, &ctx, &s, why).await,
        };
    let (photo, marketplace_url) = match source {
        ProductSource::Photo { file_id, mime, link } => {
            (PhotoRef { telegram_file_id: file_id, mime }, link)
        }
        // A link without its image (a dialogue from an earlier version) cannot make a video:
        // ask for the picture again rather than take an order that would fail.
        ProductSource::Link { .. } => {
            set_state(&s, State::AwaitingPhoto).await?;
            send(&bot, &s, t(&ctx, s.lang, "bot.create.link_no_image"), None).await?;
            return ask_photo(&bot, &ctx, &s).await;
        }
    };
    let product =
        NewProduct { user_id: s.user_id, photo: Some(photo), marketplace_url, description };
    let product_id = match ctx.products.create(&product).await {
        Ok(id) => id,
        Err(e) => {
            tracing::error!(user_id = %s.user_id, error = %e, "product not stored");
            return unavailable(&bot, &ctx, &s).await;
        }
    };
    tracing::info!(user_id = %s.user_id, product_id = %product_id, "product stored");
    choose_template(&bot, &ctx, &s, product_id).await
}

/// The template question for a stored product.
pub(super) async fn choose_template(
    bot: &Bot,
    ctx: &BotContext,
    s: &Session,
    product_id: ProductId,
) -> HandlerResult {
    set_state(s, State::ChoosingTemplate { product_id }).await?;
    let mut text = t(ctx, s.lang, "bot.create.ask_template").to_owned();
    for tpl in ctx.templates.iter() {
        text.push('\n');
        text.push_str(&tr(
            ctx,
            s.lang,
            "bot.create.template_line",
            &[("name", tpl.name.get(s.lang)), ("description", tpl.description.get(s.lang))],
        ));
    }
    let kb = keyboards::templates(ctx.texts, s.lang, &ctx.templates);
    send(bot, s, text, Some(kb)).await.map(|_| ())
}

/// A template button: LLM templates ask for wishes, "own idea" asks for the idea. Returns
/// `false` when the button does not fit the dialogue (stale).
pub(super) async fn on_template(
    bot: &Bot,
    ctx: &BotContext,
    s: &Session,
    state: &State,
    template: TemplateId,
) -> Result<bool, super::ConversationError> {
    let (Some(product_id), Some(tpl)) = (state.product_id(), ctx.templates.get(&template)) else {
        return Ok(false);
    };
    match tpl.kind {
        TemplateKind::Llm => {
            set_state(s, State::AwaitingWishes { product_id, template }).await?;
            let kb = keyboards::wishes(ctx.texts, s.lang);
            send(bot, s, t(ctx, s.lang, "bot.create.ask_wishes"), Some(kb)).await?;
        }
        TemplateKind::OwnIdea => {
            set_state(s, State::AwaitingIdea { product_id, template, idea: None }).await?;
            let kb = keyboards::menu_only(ctx.texts, s.lang);
            send(bot, s, t(ctx, s.lang, "bot.create.ask_idea"), Some(kb)).await?;
        }
    }
    Ok(true)
}

/// The wishes step (free text, or a skip word).
pub(in crate::conversation) async fn on_wishes(
    bot: Bot,
    ctx: Arc<BotContext>,
    s: Session,
    msg: Message,
    (product_id, template): (ProductId, TemplateId),
) -> HandlerResult {
    let Some(text) = msg.text() else {
        let state = State::AwaitingWishes { product_id, template };
        return super::fallback::hint(&bot, &ctx, &s, &state).await;
    };
    let wishes = if input::means_no_wishes(text) {
        None
    } else {
        match input::check_text(text, 1, input::MAX_WISHES_CHARS) {
            Ok(w) => Some(w),
            Err(why) => return reject_text(&bot, &ctx, &s, why).await,
        }
    };
    let draft = Draft { product_id, template, wishes, user_prompt: None, format: None };
    ask_count(&bot, &ctx, &s, draft).await
}

/// "Skip" on the wishes step.
pub(super) async fn skip_wishes(
    bot: &Bot,
    ctx: &BotContext,
    s: &Session,
    state: &State,
) -> Result<bool, super::ConversationError> {
    let State::AwaitingWishes { product_id, template } = state else { return Ok(false) };
    let draft = Draft {
        product_id: *product_id,
        template: template.clone(),
        wishes: None,
        user_prompt: None,
        format: None,
    };
    ask_count(bot, ctx, s, draft).await?;
    Ok(true)
}

/// The own-idea step: the idea (or its extension) is refined by the LLM and shown for approval.
pub(in crate::conversation) async fn on_idea(
    bot: Bot,
    ctx: Arc<BotContext>,
    s: Session,
    msg: Message,
    (product_id, template, idea): (ProductId, TemplateId, Option<String>),
) -> HandlerResult {
    let Some(text) = msg.text() else {
        let state = State::AwaitingIdea { product_id, template, idea };
        return super::fallback::hint(&bot, &ctx, &s, &state).await;
    };
    refine_and_review(&bot, &ctx, &s, product_id, template, idea.as_deref(), text).await
}

/// Text while the refined prompt is shown: taken as an extension of the idea.
pub(in crate::conversation) async fn on_idea_extension(
    bot: Bot,
    ctx: Arc<BotContext>,
    s: Session,
    msg: Message,
    (product_id, template, idea, prompt): (ProductId, TemplateId, String, String),
) -> HandlerResult {
    let Some(text) = msg.text() else {
        let state = State::ApprovingIdea { product_id, template, idea, prompt };
        return super::fallback::hint(&bot, &ctx, &s, &state).await;
    };
    refine_and_review(&bot, &ctx, &s, product_id, template, Some(&idea), text).await
}

async fn refine_and_review(
    bot: &Bot,
    ctx: &BotContext,
    s: &Session,
    product_id: ProductId,
    template: TemplateId,
    previous: Option<&str>,
    text: &str,
) -> HandlerResult {
    let addition = match input::check_text(text, 1, input::MAX_IDEA_CHARS) {
        Ok(a) => a,
        Err(why) => return reject_text(bot, ctx, s, why).await,
    };
    let idea = previous.map(|p| input::extend_idea(p, &addition)).unwrap_or(addition);
    if let Err(why) = input::check_text(&idea, 1, input::MAX_IDEA_CHARS) {
        return reject_text(bot, ctx, s, why).await;
    }
    let description = match ctx.products.get(product_id, s.user_id).await {
        Ok(Some(p)) => p.description,
        Ok(None) => String::new(),
        Err(_) => return unavailable(bot, ctx, s).await,
    };
    match refine_quota(ctx, s).await {
        RefineQuota::Allowed => {}
        RefineQuota::Limited(wait) => {
            BotCounters::inc(&ctx.counters.refines_limited);
            let minutes = wait.as_secs().div_ceil(60).max(1).to_string();
            let limit = ctx.settings.idea_refines_per_hour.to_string();
            let text = tr(
                ctx,
                s.lang,
                "bot.create.refine_limited",
                &[("limit", &limit), ("minutes", &minutes)],
            );
            send(bot, s, text, None).await?;
            return review(bot, ctx, s, product_id, template, idea.clone(), idea).await;
        }
        RefineQuota::Unavailable => return unavailable(bot, ctx, s).await,
    }
    // The LLM may be slow; the user sees "typing" meanwhile and the idea as written if it
    // does not answer in time.
    let _ = bot.send_chat_action(s.chat, ChatAction::Typing).await;
    let refined = tokio::time::timeout(
        ctx.settings.refine_timeout,
        ctx.prompts.refine_idea(&idea, &description, s.lang),
    )
    .await;
    let prompt = match refined {
        Ok(Ok(p)) if !p.trim().is_empty() => p,
        Ok(Ok(_)) => idea.clone(),
        Ok(Err(e)) => {
            tracing::warn!(user_id = %s.user_id, error = %e, "idea not refined; shown as written");
            idea.clone()
        }
        Err(_) => {
            tracing::warn!(user_id = %s.user_id, "idea refinement timed out; shown as written");
            idea.clone()
        }
    };
    review(bot, ctx, s, product_id, template, idea, prompt).await
}

/// Shows `prompt` for approval.
async fn review(
    bot: &Bot,
    ctx: &BotContext,
    s: &Session,
    product_id: ProductId,
    template: TemplateId,
    idea: String,
    prompt: String,
) -> HandlerResult {
    let text = tr(ctx, s.lang, "bot.create.idea_review", &[("prompt", &escape_html(&prompt))]);
    set_state(s, State::ApprovingIdea { product_id, template, idea, prompt }).await?;
    send(bot, s, text, Some(keyboards::idea_review(ctx.texts, s.lang))).await.map(|_| ())
}

/// Whether the user may have one more idea refined by the LLM now.
enum RefineQuota {
    Allowed,
    /// The hourly limit is reached; the next refinement is possible after this long.
    Limited(Duration),
    /// The counter could not be read: refuse rather than call the LLM uncounted.
    Unavailable,
}

/// Counts one refinement against `IDEA_REFINES_PER_HOUR`, in the database every replica shares.
async fn refine_quota(ctx: &BotContext, s: &Session) -> RefineQuota {
    let limit = ctx.settings.idea_refines_per_hour;
    let Some(usage) = ctx.usage.as_ref().filter(|_| limit > 0) else {
        return RefineQuota::Allowed;
    };
    match usage.try_consume(s.user_id, IDEA_REFINE, limit, REFINE_WINDOW).await {
        Ok(None) => RefineQuota::Allowed,
        Ok(Some(wait)) => {
            tracing::info!(user_id = %s.user_id, limit, "idea refinement limit reached");
            RefineQuota::Limited(wait)
        }
        Err(e) => {
            tracing::error!(user_id = %s.user_id, error = %e, "refinement counter unavailable");
            RefineQuota::Unavailable
        }
    }
}

/// The window `IDEA_REFINES_PER_HOUR` counts over.
const REFINE_WINDOW: Duration = Duration::from_secs(3600);

/// "Approve" or "Add details" on the refined prompt.
pub(super) async fn on_idea_button(
    bot: &Bot,
    ctx: &BotContext,
    s: &Session,
    state: &State,
    approve: bool,
) -> Result<bool, super::ConversationError> {
    let State::ApprovingIdea { product_id, template, idea, prompt } = state else {
        return Ok(false);
    };
    if approve {
        let draft = Draft {
            product_id: *product_id,
            template: template.clone(),
            wishes: None,
            user_prompt: Some(prompt.clone()),
            format: None,
        };
        ask_count(bot, ctx, s, draft).await?;
    } else {
        let next = State::AwaitingIdea {
            product_id: *product_id,
            template: template.clone(),
            idea: Some(idea.clone()),
        };
        set_state(s, next).await?;
        let kb = keyboards::menu_only(ctx.texts, s.lang);
        send(bot, s, t(ctx, s.lang, "bot.create.ask_extend"), Some(kb)).await?;
    }
    Ok(true)
}

async fn ask_count(bot: &Bot, ctx: &BotContext, s: &Session, draft: Draft) -> HandlerResult {
    let price = unit_price(ctx, &draft_format(ctx, &draft));
    set_state(s, State::ChoosingCount { draft }).await?;
    let line = balance_line_at(ctx, s, price).await;
    let text = tr(ctx, s.lang, "bot.create.ask_count", &[("balance_line", &line)]);
    let kb = keyboards::counts(ctx.texts, s.lang, price);
    send(bot, s, text, Some(kb)).await.map(|_| ())
}

/// The draft's format: the one chosen on the summary, or the template's on the primary model.
pub(super) fn draft_format(ctx: &BotContext, draft: &Draft) -> VideoFormat {
    let choices = &ctx.settings.video_choices;
    match &draft.format {
        // Repeating an order from before models could be chosen: its aspect and length on
        // the primary model.
        Some(format) if format.model.is_none() => choices.default_format(format.options),
        Some(format) => format.clone(),
        None => {
            let template = ctx.templates.get(&draft.template);
            choices.default_format(template.map(|t| t.options).unwrap_or_default())
        }
    }
}

/// What one video in `format` costs.
pub(super) fn unit_price(ctx: &BotContext, format: &VideoFormat) -> Credits {
    ctx.settings.video_choices.price(format, ctx.settings.price_per_video)
}

/// The summary's keyboard for `draft` × `count` under order key `key`.
pub(super) fn summary_keyboard(
    ctx: &BotContext,
    lang: Language,
    draft: &Draft,
    count: VideoCount,
    key: &str,
) -> InlineKeyboardMarkup {
    let format = draft_format(ctx, draft);
    let total = unit_price(ctx, &format).times(count.get());
    let offer = keyboards::FormatOffer {
        choices: &ctx.settings.video_choices,
        chosen: &format,
        base_price: ctx.settings.price_per_video,
    };
    keyboards::summary(ctx.texts, lang, key, total, &offer)
}

/// A format button on the summary: the summary again with the change and a fresh order key
/// (so the old "Start", with the old total, no longer places anything). `false` when the
/// button does not fit the dialogue or offers what is not on offer.
pub(super) async fn on_format(
    bot: &Bot,
    ctx: &BotContext,
    s: &Session,
    state: &State,
    change: FormatChange,
) -> Result<bool, super::ConversationError> {
    let State::Confirming { draft, count, .. } = state else { return Ok(false) };
    let current = draft_format(ctx, draft);
    let Some(next) = ctx.settings.video_choices.apply(&current, change) else { return Ok(false) };
    let draft = Draft { format: Some(next), ..draft.clone() };
    show_summary(bot, ctx, s, draft, *count).await
}

/// A count button: the summary with "Start (N credits)" and a fresh order key.
pub(super) async fn on_count(
    bot: &Bot,
    ctx: &BotContext,
    s: &Session,
    state: &State,
    count: VideoCount,
) -> Result<bool, super::ConversationError> {
    let draft = match state {
        State::ChoosingCount { draft } | State::Confirming { draft, .. } => draft.clone(),
        _ => return Ok(false),
    };
    show_summary(bot, ctx, s, draft, count).await
}

/// The order's summary with "Start (N credits)", the format buttons and a fresh order key.
async fn show_summary(
    bot: &Bot,
    ctx: &BotContext,
    s: &Session,
    draft: Draft,
    count: VideoCount,
) -> Result<bool, super::ConversationError> {
    let product = match ctx.products.get(draft.product_id, s.user_id).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            send(bot, s, t(ctx, s.lang, "bot.create.product_missing"), None).await?;
            begin(bot, ctx, s).await?;
            return Ok(true);
        }
        Err(_) => {
            unavailable(bot, ctx, s).await?;
            return Ok(true);
        }
    };
    let template_name = ctx
        .templates
        .get(&draft.template)
        .map(|t| t.name.get(s.lang).to_owned())
        .unwrap_or_else(|| draft.template.to_string());
    let format = draft_format(ctx, &draft);
    let price = unit_price(ctx, &format);
    let total = price.times(count.get());
    let model = ctx
        .settings
        .video_choices
        .model(format.model.as_deref())
        .map(|m| tr(ctx, s.lang, "bot.create.format_model", &[("name", &escape_html(&m.name))]))
        .unwrap_or_default();
    let format_line = tr(
        ctx,
        s.lang,
        "bot.create.format_line",
        &[
            ("model", &model),
            ("aspect", &keyboards::aspect_label(ctx.texts, s.lang, format.options.aspect)),
            ("seconds", &format.options.duration_secs.to_string()),
            ("price", &price.to_string()),
        ],
    );
    let wishes = draft
        .wishes
        .as_deref()
        .or(draft.user_prompt.as_deref())
        .map(|w| tr(ctx, s.lang, "bot.create.summary_wishes", &[("wishes", &escape_html(w))]))
        .unwrap_or_default();
    let key = new_order_token();
    let text = tr(
        ctx,
        s.lang,
        "bot.create.summary",
        &[
            ("template", &escape_html(&template_name)),
            ("format", &format_line),
            ("count", &count.get().to_string()),
            ("total", &total.to_string()),
            ("balance_line", &balance_line_at(ctx, s, price).await),
            ("description", &escape_html(&shorten(&product.description, 300))),
            ("wishes", &wishes),
        ],
    );
    let kb = summary_keyboard(ctx, s.lang, &draft, count, &key);
    set_state(s, State::Confirming { draft, count, key }).await?;
    send(bot, s, text, Some(kb)).await?;
    Ok(true)
}

/// The first `max` characters, with an ellipsis when cut.
fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut out: String = text.chars().take(max).collect();
        out.push('…');
        out
    }
}

/// "Make another with this product": back to the template choice with the stored product.
pub(super) async fn make_another(
    bot: &Bot,
    ctx: &BotContext,
    s: &Session,
    product_id: ProductId,
) -> HandlerResult {
    match ctx.products.get(product_id, s.user_id).await {
        Ok(Some(_)) => choose_template(bot, ctx, s, product_id).await,
        Ok(None) => {
            send(bot, s, t(ctx, s.lang, "bot.create.product_missing"), None).await?;
            begin(bot, ctx, s).await
        }
        Err(_) => unavailable(bot, ctx, s).await,
    }
}

/// "Retry" under a failed order: the same product, template and wishes, back at the count.
pub(super) async fn retry(
    bot: &Bot,
    ctx: &BotContext,
    s: &Session,
    order_id: OrderId,
) -> HandlerResult {
    let Some(history) = &ctx.history else { return begin(bot, ctx, s).await };
    match history.order_request(order_id, s.user_id).await {
        Ok(Some(draft)) if ctx.templates.get(&draft.template).is_some() => {
            ask_count(bot, ctx, s, draft).await
        }
        Ok(Some(draft)) => choose_template(bot, ctx, s, draft.product_id).await,
        Ok(None) => begin(bot, ctx, s).await,
        Err(_) => unavailable(bot, ctx, s).await,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn shorten_cuts_on_characters() {
        assert_eq!(super::shorten("привет", 10), "привет");
        assert_eq!(super::shorten("привет", 3), "при…");
    }
}
