//! Inline keyboards the worker sends, and the typed callback data of their buttons.
//!
//! Callback data is parsed into [`CallbackData`] at the edge and never matched as raw strings
//! deeper in. The wire form is short (`tag` or `tag:id`) because Telegram allows 1–64 bytes.

use super::texts::NotifyTexts;
use crate::domain::{ErrorClass, JobId, Language, OrderId, ProductId};
use crate::ports::FailureNotice;
use std::fmt;
use teloxide::types::{InlineKeyboardButton, InlineKeyboardMarkup};

/// What a button press asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallbackData {
    /// "Make another with this product": start a new order from the stored product.
    MakeAnother { product_id: ProductId },
    /// "Main menu".
    MainMenu,
    /// "Retry": place the failed order's request again.
    Retry { order_id: OrderId },
    /// "Create video" (here: "Send another photo"): start a new order from the photo step.
    CreateVideo,
    /// "Send the video": send a finished job's video on request (under a video offer, sent
    /// when an earlier send's outcome is unknown).
    SendVideo { job_id: JobId },
    /// "Cancel the order": cancel the order's videos that have not started, with refund.
    CancelOrder { order_id: OrderId },
}

/// Callback data that is not one of ours (an old button, or forged data).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown callback data {0:?}")]
pub struct InvalidCallbackData(pub String);

/// Telegram's limit on callback data, in bytes.
pub const MAX_CALLBACK_BYTES: usize = 64;

impl CallbackData {
    /// The wire form put into the button (at most [`MAX_CALLBACK_BYTES`] bytes).
    pub fn encode(&self) -> String {
        match self {
            CallbackData::MakeAnother { product_id } => format!("mk:{product_id}"),
            CallbackData::MainMenu => "menu".to_owned(),
            CallbackData::Retry { order_id } => format!("rt:{order_id}"),
            CallbackData::SendVideo { job_id } => format!("vid:{job_id}"),
            CallbackData::CreateVideo => "create".to_owned(),
            CallbackData::CancelOrder { order_id } => format!("cxl:{order_id}"),
        }
    }

    /// Parses the wire form; the only way from a callback query's data to a `CallbackData`.
    pub fn parse(data: &str) -> Result<Self, InvalidCallbackData> {
        let invalid = || InvalidCallbackData(data.to_owned());
        let (tag, arg) = match data.split_once(':') {
            Some((tag, arg)) => (tag, Some(arg)),
            None => (data, None),
        };
        let id = || -> Result<i64, InvalidCallbackData> {
            arg.and_then(|a| a.parse::<i64>().ok()).ok_or_else(invalid)
        };
        match (tag, arg) {
            ("mk", Some(_)) => Ok(CallbackData::MakeAnother { product_id: ProductId(id()?) }),
            ("menu", None) => Ok(CallbackData::MainMenu),
            ("create", None) => Ok(CallbackData::CreateVideo),
            ("rt", Some(_)) => Ok(CallbackData::Retry { order_id: OrderId(id()?) }),
            ("vid", Some(_)) => Ok(CallbackData::SendVideo { job_id: JobId(id()?) }),
            ("cxl", Some(_)) => Ok(CallbackData::CancelOrder { order_id: OrderId(id()?) }),
            _ => Err(invalid()),
        }
    }

    /// A button with `text` carrying this data.
    pub fn button(&self, text: impl Into<String>) -> InlineKeyboardButton {
        InlineKeyboardButton::callback(text, self.encode())
    }
}

impl fmt::Display for CallbackData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

/// Under a finished video: "Make another with this product" (when the product is stored) and
/// "Main menu".
pub fn video_keyboard(
    texts: &NotifyTexts,
    language: Language,
    product_id: Option<ProductId>,
) -> InlineKeyboardMarkup {
    let mut rows = Vec::new();
    if let Some(product_id) = product_id {
        rows.push(vec![
            CallbackData::MakeAnother { product_id }.button(texts.button(language, "make_another"))
        ]);
    }
    rows.push(vec![CallbackData::MainMenu.button(texts.button(language, "main_menu"))]);
    InlineKeyboardMarkup::new(rows)
}

/// Under a video offer: "Send the video", then "Main menu".
pub fn offer_keyboard(
    texts: &NotifyTexts,
    language: Language,
    job_id: JobId,
) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new(vec![
        vec![CallbackData::SendVideo { job_id }.button(texts.button(language, "send_video"))],
        vec![CallbackData::MainMenu.button(texts.button(language, "main_menu"))],
    ])
}

/// Under the "queued" progress message: "Cancel the order".
pub fn queued_keyboard(
    texts: &NotifyTexts,
    language: Language,
    order_id: OrderId,
) -> InlineKeyboardMarkup {
    let cancel = CallbackData::CancelOrder { order_id };
    InlineKeyboardMarkup::new(vec![vec![cancel.button(texts.button(language, "cancel"))]])
}

/// Under a failure message: "Send another photo" when the photo was the problem, else "Retry"
/// unless the failure was the user's content (the same request would fail the same way; the
/// text says what to change); "Support" (when a support link is configured) for failures only
/// we can fix — billing, configuration, unknown; then "Main menu".
pub fn failure_keyboard(
    texts: &NotifyTexts,
    language: Language,
    notice: &FailureNotice,
    support: Option<&url::Url>,
) -> InlineKeyboardMarkup {
    let mut rows = Vec::new();
    if notice.photo_problem.is_some() {
        rows.push(vec![CallbackData::CreateVideo.button(texts.button(language, "another_photo"))]);
    } else if notice.class != ErrorClass::UserViolation {
        let retry = CallbackData::Retry { order_id: notice.order_id };
        rows.push(vec![retry.button(texts.button(language, "retry"))]);
    }
    let ours =
        matches!(notice.class, ErrorClass::Billing | ErrorClass::Config | ErrorClass::Unknown);
    if let Some(url) = support.filter(|_| ours && notice.photo_problem.is_none()) {
        rows.push(vec![InlineKeyboardButton::url(texts.button(language, "support"), url.clone())]);
    }
    rows.push(vec![CallbackData::MainMenu.button(texts.button(language, "main_menu"))]);
    InlineKeyboardMarkup::new(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::PhotoProblem;

    fn all_examples() -> Vec<CallbackData> {
        vec![
            CallbackData::MakeAnother { product_id: ProductId(i64::MAX) },
            CallbackData::MainMenu,
            CallbackData::Retry { order_id: OrderId(i64::MIN) },
            CallbackData::Retry { order_id: OrderId(42) },
            CallbackData::SendVideo { job_id: JobId(i64::MAX) },
            CallbackData::CancelOrder { order_id: OrderId(i64::MAX) },
            CallbackData::CreateVideo,
        ]
    }

    #[test]
    fn every_variant_round_trips_within_telegrams_limit() {
        for data in all_examples() {
            let wire = data.encode();
            assert!(!wire.is_empty() && wire.len() <= MAX_CALLBACK_BYTES, "{wire}");
            assert_eq!(CallbackData::parse(&wire), Ok(data));
        }
    }

    #[test]
    fn foreign_data_is_refused() {
        for wire in
            ["", "mk", "mk:", "mk:x", "menu:1", "rt", "again:5", "retry:12", "vid", "vid:", "vid:x"]
        {
            assert!(CallbackData::parse(wire).is_err(), "{wire}");
        }
    }

    fn notice(class: ErrorClass, photo_problem: Option<PhotoProblem>) -> FailureNotice {
        FailureNotice {
            order_id: OrderId(1),
            job_id: JobId(2),
            class,
            refunded: crate::domain::Credits::ZERO,
            product_id: None,
            detail: None,
            photo_problem,
        }
    }

    fn data(kb: &InlineKeyboardMarkup) -> Vec<String> {
        use teloxide::types::InlineKeyboardButtonKind as Kind;
        kb.inline_keyboard
            .iter()
            .flatten()
            .map(|b| match &b.kind {
                Kind::CallbackData(d) => d.clone(),
                Kind::Url(u) => u.to_string(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn failure_buttons_follow_the_cause() {
        let texts = NotifyTexts::builtin();
        let support = url::Url::parse("https://t.me/support_bot?start=help").expect("url");
        let kb =
            |n: &FailureNotice| data(&failure_keyboard(&texts, Language::En, n, Some(&support)));
        assert_eq!(kb(&notice(ErrorClass::UserViolation, None)), ["menu"]);
        assert_eq!(kb(&notice(ErrorClass::Temporary, None)), ["rt:1", "menu"]);
        for class in [ErrorClass::Billing, ErrorClass::Config] {
            assert_eq!(kb(&notice(class, None)), ["rt:1", support.as_str(), "menu"]);
        }
        let photo = notice(ErrorClass::Unknown, Some(PhotoProblem::NotAnImage));
        assert_eq!(kb(&photo), ["create", "menu"]);
        let none = failure_keyboard(&texts, Language::En, &notice(ErrorClass::Unknown, None), None);
        assert_eq!(data(&none), ["rt:1", "menu"], "no support link configured");
    }
}
