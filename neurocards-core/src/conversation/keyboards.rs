//! The inline keyboards the conversation sends. Every callback button is built from an
//! [`Action`], so its data always parses back (a test walks every keyboard).

use super::action::Action;
use super::context::ConversationSettings;
use super::formats::{self, FormatChange, VideoChoices};
use crate::domain::{
    AspectRatio, Credits, GenerationOptions, Language, OrderId, ProductId, VideoCount, VideoFormat,
};
use crate::i18n::Texts;
use crate::templates::TemplateCatalogue;
use teloxide::types::{InlineKeyboardButton, InlineKeyboardMarkup};

fn button(texts: &Texts, lang: Language, key: &str, action: Action) -> InlineKeyboardButton {
    InlineKeyboardButton::callback(texts.get(lang, key), action.encode())
}

fn menu_row(texts: &Texts, lang: Language) -> Vec<InlineKeyboardButton> {
    vec![button(texts, lang, "common.main_menu", Action::MainMenu)]
}

fn support_row(
    texts: &Texts,
    lang: Language,
    settings: &ConversationSettings,
) -> Option<Vec<InlineKeyboardButton>> {
    settings
        .support_url
        .clone()
        .map(|url| vec![InlineKeyboardButton::url(texts.get(lang, "bot.menu.support"), url)])
}

/// Only "Main menu".
pub fn menu_only(texts: &Texts, lang: Language) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new([menu_row(texts, lang)])
}

/// "I accept".
pub fn consent(texts: &Texts, lang: Language) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new([[button(texts, lang, "bot.consent.accept", Action::AcceptTerms)]])
}

/// The main menu: create, account, help, support, language.
pub fn main_menu(
    texts: &Texts,
    lang: Language,
    settings: &ConversationSettings,
) -> InlineKeyboardMarkup {
    let other = match lang {
        Language::Ru => Language::En,
        Language::En => Language::Ru,
    };
    let mut rows = vec![
        vec![button(texts, lang, "bot.menu.create", Action::CreateVideo)],
        vec![
            button(texts, lang, "bot.menu.videos", Action::MyVideos { page: 0 }),
            button(texts, lang, "bot.menu.account", Action::Account),
        ],
        vec![button(texts, lang, "bot.menu.help", Action::Help)],
    ];
    rows.extend(support_row(texts, lang, settings));
    rows.push(vec![button(texts, lang, "bot.menu.language", Action::SetLanguage(other))]);
    InlineKeyboardMarkup::new(rows)
}

/// One button per template, then "Main menu".
pub fn templates(
    texts: &Texts,
    lang: Language,
    catalogue: &TemplateCatalogue,
) -> InlineKeyboardMarkup {
    let mut rows: Vec<Vec<InlineKeyboardButton>> = catalogue
        .iter()
        .map(|t| {
            vec![InlineKeyboardButton::callback(
                t.name.get(lang),
                Action::Template(t.id.clone()).encode(),
            )]
        })
        .collect();
    rows.push(menu_row(texts, lang));
    InlineKeyboardMarkup::new(rows)
}

/// "Skip" for the wishes step.
pub fn wishes(texts: &Texts, lang: Language) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new([
        vec![button(texts, lang, "bot.create.skip", Action::SkipWishes)],
        menu_row(texts, lang),
    ])
}

/// Under the image taken from a marketplace link: "Yes, this one", "Send my own photo", menu.
pub fn link_photo(texts: &Texts, lang: Language) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new([
        vec![button(texts, lang, "bot.create.link_yes", Action::ConfirmLinkPhoto)],
        vec![button(texts, lang, "bot.create.link_own_photo", Action::CreateVideo)],
        menu_row(texts, lang),
    ])
}

/// "Approve" / "Add details" for the refined own idea.
pub fn idea_review(texts: &Texts, lang: Language) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new([
        vec![
            button(texts, lang, "bot.create.approve", Action::ApproveIdea),
            button(texts, lang, "bot.create.extend", Action::ExtendIdea),
        ],
        menu_row(texts, lang),
    ])
}

/// 1 / 3 / 5 videos with their prices.
pub fn counts(texts: &Texts, lang: Language, price: Credits) -> InlineKeyboardMarkup {
    let buttons: Vec<InlineKeyboardButton> = VideoCount::CHOICES
        .iter()
        .filter_map(|n| VideoCount::parse(*n).ok())
        .map(|count| {
            let label = texts.render(
                lang,
                "bot.create.count_button",
                &[
                    ("count", &count.get().to_string()),
                    ("credits", &price.times(count.get()).to_string()),
                ],
            );
            InlineKeyboardButton::callback(label, Action::Count(count).encode())
        })
        .collect();
    InlineKeyboardMarkup::new([buttons, menu_row(texts, lang)])
}

/// The summary's buttons: "Start (N credits)"; the aspects, the chosen model's lengths (with
/// their price per video) and the models, the chosen ones marked; "Main menu".
pub fn summary(
    texts: &Texts,
    lang: Language,
    key: &str,
    total: Credits,
    format: &FormatOffer<'_>,
) -> InlineKeyboardMarkup {
    let label = texts.render(lang, "bot.create.start_button", &[("total", &total.to_string())]);
    let mark = |chosen: bool, label: String| if chosen { format!("✅ {label}") } else { label };
    let mut rows = vec![vec![InlineKeyboardButton::callback(
        label,
        Action::Start { key: key.to_owned() }.encode(),
    )]];
    let aspects = formats::ASPECTS
        .iter()
        .map(|aspect| {
            let label =
                mark(*aspect == format.chosen.options.aspect, aspect_label(texts, lang, *aspect));
            InlineKeyboardButton::callback(
                label,
                Action::Format(FormatChange::Aspect(*aspect)).encode(),
            )
        })
        .collect();
    rows.push(aspects);
    let choices = format.choices;
    if let Some(model) = choices.model(format.chosen.model.as_deref()) {
        let lengths = model
            .durations
            .iter()
            .map(|secs| {
                let option = VideoFormat {
                    model: Some(model.slug.clone()),
                    options: GenerationOptions { duration_secs: *secs, ..format.chosen.options },
                };
                let price = choices.price(&option, format.base_price).to_string();
                let label = texts.render(
                    lang,
                    "bot.create.seconds_button",
                    &[("seconds", &secs.to_string()), ("price", &price)],
                );
                let label = mark(*secs == format.chosen.options.duration_secs, label);
                InlineKeyboardButton::callback(
                    label,
                    Action::Format(FormatChange::Duration(*secs)).encode(),
                )
            })
            .collect();
        rows.push(lengths);
    }
    if choices.models.len() > 1 {
        let models = choices
            .models
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let label = mark(Some(&m.slug) == format.chosen.model.as_ref(), m.name.clone());
                InlineKeyboardButton::callback(
                    label,
                    Action::Format(FormatChange::Model(i)).encode(),
                )
            })
            .collect();
        rows.push(models);
    }
    rows.push(menu_row(texts, lang));
    InlineKeyboardMarkup::new(rows)
}

/// What the summary offers for the format: the choices, the chosen format, the base price.
#[derive(Debug, Clone, Copy)]
pub struct FormatOffer<'a> {
    pub choices: &'a VideoChoices,
    pub chosen: &'a VideoFormat,
    pub base_price: Credits,
}

/// "9:16 vertical" / "16:9 horizontal".
pub fn aspect_label(texts: &Texts, lang: Language, aspect: AspectRatio) -> String {
    let key = match aspect {
        AspectRatio::Landscape => "bot.create.horizontal",
        AspectRatio::Portrait | AspectRatio::Square => "bot.create.vertical",
    };
    texts.get(lang, key).to_owned()
}

/// "Top up" and "Main menu" (not enough credits; the account page).
pub fn topup_and_menu(texts: &Texts, lang: Language) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new([
        vec![button(texts, lang, "bot.order.topup", Action::TopUp)],
        menu_row(texts, lang),
    ])
}

/// Support link (when configured) and "Main menu".
pub fn support_and_menu(
    texts: &Texts,
    lang: Language,
    settings: &ConversationSettings,
) -> InlineKeyboardMarkup {
    let mut rows: Vec<Vec<InlineKeyboardButton>> =
        support_row(texts, lang, settings).into_iter().collect();
    rows.push(menu_row(texts, lang));
    InlineKeyboardMarkup::new(rows)
}

/// "Create video" and "Main menu" (help page).
pub fn create_and_menu(texts: &Texts, lang: Language) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new([
        vec![button(texts, lang, "bot.menu.create", Action::CreateVideo)],
        menu_row(texts, lang),
    ])
}

/// Under "Accepted": "Cancel the order", then "Main menu".
pub fn accepted(texts: &Texts, lang: Language, order_id: OrderId) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new([
        vec![button(texts, lang, "bot.order.cancel", Action::CancelOrder { order_id })],
        menu_row(texts, lang),
    ])
}

/// Under "My orders": "Cancel №N (k waiting)" for each order with videos still waiting, then
/// "Main menu".
pub fn orders(texts: &Texts, lang: Language, waiting: &[(OrderId, u32)]) -> InlineKeyboardMarkup {
    let mut rows: Vec<Vec<InlineKeyboardButton>> = waiting
        .iter()
        .map(|(order_id, n)| {
            let label = texts.render(
                lang,
                "bot.account.cancel_order",
                &[("order", &order_id.to_string()), ("waiting", &n.to_string())],
            );
            let action = Action::CancelOrder { order_id: *order_id };
            vec![InlineKeyboardButton::callback(label, action.encode())]
        })
        .collect();
    rows.push(menu_row(texts, lang));
    InlineKeyboardMarkup::new(rows)
}

/// Under a gallery video: "Repeat this order", and "New video with this product" while the
/// product is stored.
pub fn gallery_video(
    texts: &Texts,
    lang: Language,
    order_id: OrderId,
    product_id: Option<ProductId>,
) -> InlineKeyboardMarkup {
    let mut rows = vec![vec![button(texts, lang, "bot.videos.repeat", Action::Retry { order_id })]];
    if let Some(product_id) = product_id {
        let action = Action::MakeAnother { product_id };
        rows.push(vec![button(texts, lang, "bot.videos.new_with_product", action)]);
    }
    InlineKeyboardMarkup::new(rows)
}

/// Under a gallery page: "Newer" and "Older" where there are such pages, then "Main menu".
pub fn gallery_pages(
    texts: &Texts,
    lang: Language,
    page: u32,
    has_older: bool,
) -> InlineKeyboardMarkup {
    let mut nav = Vec::new();
    if let Some(newer) = page.checked_sub(1) {
        nav.push(button(texts, lang, "bot.videos.newer", Action::MyVideos { page: newer }));
    }
    if has_older {
        let older = Action::MyVideos { page: page.saturating_add(1) };
        nav.push(button(texts, lang, "bot.videos.older", older));
    }
    let mut rows = vec![];
    if !nav.is_empty() {
        rows.push(nav);
    }
    rows.push(menu_row(texts, lang));
    InlineKeyboardMarkup::new(rows)
}

/// Every keyboard the conversation can send, for the test that walks them.
pub fn all(
    texts: &Texts,
    settings: &ConversationSettings,
    catalogue: &TemplateCatalogue,
) -> Vec<InlineKeyboardMarkup> {
    let mut out = Vec::new();
    for lang in [Language::Ru, Language::En] {
        out.extend([
            menu_only(texts, lang),
            consent(texts, lang),
            main_menu(texts, lang, settings),
            templates(texts, lang, catalogue),
            wishes(texts, lang),
            idea_review(texts, lang),
            counts(texts, lang, settings.price_per_video),
            summary(
                texts,
                lang,
                &super::action::new_order_token(),
                settings.price_per_video,
                &FormatOffer {
                    choices: &settings.video_choices,
                    chosen: &settings.video_choices.default_format(GenerationOptions::default()),
                    base_price: settings.price_per_video,
                },
            ),
            topup_and_menu(texts, lang),
            support_and_menu(texts, lang, settings),
            create_and_menu(texts, lang),
            link_photo(texts, lang),
            accepted(texts, lang, OrderId(7)),
            orders(texts, lang, &[(OrderId(7), 2), (OrderId(9), 1)]),
            gallery_video(texts, lang, OrderId(7), Some(ProductId(3))),
            gallery_pages(texts, lang, 1, true),
        ]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use teloxide::types::InlineKeyboardButtonKind;

    #[test]
    fn every_callback_button_parses_and_every_label_is_translated() {
        let texts = Texts::builtin();
        let model = |slug: &str, durations: Vec<u32>| formats::ModelChoice {
            slug: slug.into(),
            name: slug.into(),
            durations,
        };
        let settings = ConversationSettings {
            support_url: Some(url::Url::parse("https://t.me/support").expect("url")),
            video_choices: VideoChoices {
                models: vec![model("sora", vec![10, 15]), model("kling", vec![5, 10, 15])],
                prices: vec![],
            },
            ..ConversationSettings::default()
        };
        let catalogue = TemplateCatalogue::builtin();
        for kb in all(texts, &settings, &catalogue) {
            for button in kb.inline_keyboard.iter().flatten() {
                assert!(!button.text.starts_with("bot."), "untranslated label {}", button.text);
                if let InlineKeyboardButtonKind::CallbackData(data) = &button.kind {
                    assert!(Action::parse(data).is_some(), "{data} has no handler");
                }
            }
        }
    }
}
