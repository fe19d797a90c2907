//! The dialogue state: where a chat is in the conversation. Stored as JSON behind teloxide's
//! `Storage` (PostgreSQL in production), so a restart or a second replica continues the dialogue.

use crate::domain::{ImageMime, ProductId, TemplateId, VideoCount, VideoFormat};
use serde::{Deserialize, Serialize};

/// Where the product's picture comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProductSource {
    /// A photo or an image file, re-fetchable by its Telegram file id; `link` is the product
    /// page it was taken from, when the seller sent a link and confirmed its image.
    Photo {
        file_id: String,
        mime: ImageMime,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        link: Option<String>,
    },
    /// A product page on a supported marketplace, without its image: left by dialogues of an
    /// earlier version; the seller is asked for a photo (nothing is ordered without one).
    Link { url: String },
}

/// Everything chosen for an order before the count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Draft {
    pub product_id: ProductId,
    pub template: TemplateId,
    /// Free-text wishes (LLM templates), if any.
    pub wishes: Option<String>,
    /// The approved prompt ("my own idea").
    pub user_prompt: Option<String>,
    /// The model, aspect and length chosen on the summary; `None` keeps the template's format
    /// on the primary model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<VideoFormat>,
}

/// One chat's place in the conversation.
///
/// Steps that belong to an order carry what was chosen so far; the product itself is stored
/// (see [`crate::ports::Products`]) as soon as its description arrives, so the state only holds
/// its id.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum State {
    /// Nothing in progress: the main menu.
    #[default]
    Idle,
    /// The terms were shown and not yet accepted.
    AwaitingConsent,
    /// "Create video" was pressed: waiting for a photo, an image file or a marketplace link.
    AwaitingPhoto,
    /// A marketplace link's main image is shown: waiting for "Yes, this one" (or a photo).
    ConfirmingLinkPhoto { link: String, file_id: String, mime: ImageMime },
    /// The picture arrived: waiting for the product description.
    AwaitingDescription { source: ProductSource },
    /// The product is stored: waiting for a template button.
    ChoosingTemplate { product_id: ProductId },
    /// An LLM template was chosen: waiting for wishes (text or "Skip").
    AwaitingWishes { product_id: ProductId, template: TemplateId },
    /// "My own idea" was chosen: waiting for the idea (or its extension, when `idea` is set).
    AwaitingIdea { product_id: ProductId, template: TemplateId, idea: Option<String> },
    /// The refined prompt is shown: waiting for "Approve" or "Extend".
    ApprovingIdea { product_id: ProductId, template: TemplateId, idea: String, prompt: String },
    /// Waiting for the number of videos.
    ChoosingCount { draft: Draft },
    /// The summary is shown with "Start"; `key` makes the order idempotent.
    Confirming { draft: Draft, count: VideoCount, key: String },
}

impl State {
    /// The locale key of the hint sent when input does not fit this step.
    pub fn hint_key(&self) -> &'static str {
        match self {
            State::Idle => "bot.hint.idle",
            State::AwaitingConsent => "bot.hint.consent",
            State::AwaitingPhoto => "bot.hint.photo",
            State::ConfirmingLinkPhoto { .. } => "bot.hint.link_photo",
            State::AwaitingDescription { .. } => "bot.hint.description",
            State::ChoosingTemplate { .. } => "bot.hint.template",
            State::AwaitingWishes { .. } => "bot.hint.wishes",
            State::AwaitingIdea { .. } => "bot.hint.idea",
            State::ApprovingIdea { .. } => "bot.hint.approve",
            State::ChoosingCount { .. } => "bot.hint.count",
            State::Confirming { .. } => "bot.hint.confirm",
        }
    }

    /// The product the dialogue is about, once it is stored.
    pub fn product_id(&self) -> Option<ProductId> {
        match self {
            State::ChoosingTemplate { product_id }
            | State::AwaitingWishes { product_id, .. }
            | State::AwaitingIdea { product_id, .. }
            | State::ApprovingIdea { product_id, .. } => Some(*product_id),
            State::ChoosingCount { draft } | State::Confirming { draft, .. } => {
                Some(draft.product_id)
            }
            _ => None,
        }
    }

    /// The order key a "Start" button must carry to place this dialogue's order.
    pub fn order_key(&self) -> Option<&str> {
        match self {
            State::Confirming { key, .. } => Some(key),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tpl(s: &str) -> TemplateId {
        TemplateId::parse(s).expect("valid template id")
    }

    #[test]
    fn every_state_round_trips_through_json() {
        let draft = Draft {
            product_id: ProductId(7),
            template: tpl("ugc"),
            wishes: Some("<b>sunny</b>".into()),
            user_prompt: None,
            format: Some(VideoFormat {
                model: Some("kling-3.0/video".into()),
                options: crate::domain::GenerationOptions {
                    aspect: crate::domain::AspectRatio::Landscape,
                    duration_secs: 5,
                },
            }),
        };
        let states = vec![
            State::Idle,
            State::AwaitingConsent,
            State::AwaitingPhoto,
            State::AwaitingDescription {
                source: ProductSource::Photo {
                    file_id: "f1".into(),
                    mime: ImageMime::Png,
                    link: None,
                },
            },
            State::AwaitingDescription {
                source: ProductSource::Link { url: "https://www.ozon.ru/product/1".into() },
            },
            State::ChoosingTemplate { product_id: ProductId(7) },
            State::AwaitingWishes { product_id: ProductId(7), template: tpl("ugc") },
            State::AwaitingIdea { product_id: ProductId(7), template: tpl("own"), idea: None },
            State::ApprovingIdea {
                product_id: ProductId(7),
                template: tpl("own"),
                idea: "cat".into(),
                prompt: "a cat".into(),
            },
            State::ChoosingCount { draft: draft.clone() },
            State::Confirming {
                draft,
                count: VideoCount::parse(3).expect("offered count"),
                key: "k".into(),
            },
        ];
        for state in states {
            let json = serde_json::to_value(&state).expect("serializes");
            let back: State = serde_json::from_value(json).expect("deserializes");
            assert_eq!(back, state);
        }
    }

    #[test]
    fn only_confirming_carries_an_order_key_and_hints_differ_per_step() {
        assert_eq!(State::Idle.order_key(), None);
        let hints: std::collections::HashSet<_> =
            [State::Idle, State::AwaitingPhoto, State::AwaitingConsent]
                .iter()
                .map(State::hint_key)
                .collect();
        assert_eq!(hints.len(), 3);
    }
}
