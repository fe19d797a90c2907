//! The conversation's buttons: callback data parsed into [`Action`] at the edge, so handlers
//! never match raw strings. Every encoded form fits Telegram's 64-byte limit. The buttons the
//! worker sends ([`CallbackData`]: make another, main menu, retry, send the video) keep their own wire forms and
//! parse into the same enum, so one tree handles every button the bot ever sends.

use super::formats::FormatChange;
use crate::domain::{
    AspectRatio, JobId, Language, OrderId, PackId, ProductId, Rail, TemplateId, VideoCount,
};
use crate::telegram::keyboards::CallbackData;

/// Telegram's limit on `callback_data`, in bytes.
pub const MAX_CALLBACK_BYTES: usize = 64;

/// The last gallery page a button may ask for (a bound on forged data).
pub const MAX_GALLERY_PAGE: u32 = 100_000;

/// What a button asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Accept the terms (asked once).
    AcceptTerms,
    /// Leave any step and show the main menu.
    MainMenu,
    /// Start the create-video flow (asks for the product photo).
    CreateVideo,
    /// Balance, recent orders, top-up.
    Account,
    Help,
    /// The packs on sale ("Buy credits").
    TopUp,
    /// Buy a pack on a rail: a Stars invoice, or a YooKassa payment link.
    BuyPack {
        rail: Rail,
        pack: PackId,
    },
    /// Switch the conversation language.
    SetLanguage(Language),
    /// Pick a template from the catalogue.
    Template(TemplateId),
    /// No wishes for this video.
    SkipWishes,
    /// Use the refined "own idea" prompt.
    ApproveIdea,
    /// Add to the "own idea" before approving.
    ExtendIdea,
    /// How many videos to make.
    Count(VideoCount),
    /// Place the order shown in the summary; `key` is the dialogue's order key.
    Start {
        key: String,
    },
    /// Another order with a stored product: back to the template choice.
    MakeAnother {
        product_id: ProductId,
    },
    /// Order again what a failed order asked for.
    Retry {
        order_id: OrderId,
    },
    /// "Cancel": cancel the order's videos that have not started, with refund.
    CancelOrder {
        order_id: OrderId,
    },
    /// A change of the model, aspect or length on the summary.
    Format(FormatChange),
    /// "My videos", or another page of it (0 is the newest).
    MyVideos {
        page: u32,
    },
    /// "Yes, this one": the image taken from a marketplace link is the product.
    ConfirmLinkPhoto,
    /// Send a finished job's video (under an offer sent when an earlier send may have failed).
    SendVideo {
        job_id: JobId,
    },
}

impl Action {
    /// The `callback_data` for this action.
    pub fn encode(&self) -> String {
        match self {
            Action::AcceptTerms => "terms".into(),
            Action::MainMenu => CallbackData::MainMenu.encode(),
            Action::CreateVideo => "create".into(),
            Action::Account => "account".into(),
            Action::Help => "help".into(),
            Action::TopUp => "topup".into(),
            Action::BuyPack { rail, pack } => format!("buy:{}:{pack}", rail_code(*rail)),
            Action::SetLanguage(l) => format!("lang:{}", l.as_str()),
            Action::Template(t) => format!("tpl:{t}"),
            Action::SkipWishes => "skip".into(),
            Action::ConfirmLinkPhoto => "lnk:ok".into(),
            Action::MyVideos { page } => format!("gal:{page}"),
            Action::Format(FormatChange::Aspect(AspectRatio::Landscape)) => "fa:h".into(),
            Action::Format(FormatChange::Aspect(_)) => "fa:v".into(),
            Action::Format(FormatChange::Duration(secs)) => format!("fd:{secs}"),
            Action::Format(FormatChange::Model(index)) => format!("fm:{index}"),
            Action::CancelOrder { order_id } => {
                CallbackData::CancelOrder { order_id: *order_id }.encode()
            }
            Action::ApproveIdea => "idea:ok".into(),
            Action::ExtendIdea => "idea:more".into(),
            Action::Count(c) => format!("cnt:{}", c.get()),
            Action::Start { key } => format!("go:{key}"),
            Action::MakeAnother { product_id } => {
                CallbackData::MakeAnother { product_id: *product_id }.encode()
            }
            Action::Retry { order_id } => CallbackData::Retry { order_id: *order_id }.encode(),
            Action::SendVideo { job_id } => CallbackData::SendVideo { job_id: *job_id }.encode(),
        }
    }

    /// Parses `callback_data`; `None` for anything this bot never sent (or no longer sends).
    pub fn parse(data: &str) -> Option<Self> {
        if let Ok(worker_button) = CallbackData::parse(data) {
            return match worker_button {
                CallbackData::MainMenu => Some(Action::MainMenu),
                CallbackData::MakeAnother { product_id } if product_id.get() > 0 => {
                    Some(Action::MakeAnother { product_id })
                }
                CallbackData::Retry { order_id } if order_id.get() > 0 => {
                    Some(Action::Retry { order_id })
                }
                CallbackData::SendVideo { job_id } if job_id.get() > 0 => {
                    Some(Action::SendVideo { job_id })
                }
                CallbackData::CancelOrder { order_id } if order_id.get() > 0 => {
                    Some(Action::CancelOrder { order_id })
                }
                CallbackData::CreateVideo => Some(Action::CreateVideo),
                _ => None,
            };
        }
        let (head, arg) = match data.split_once(':') {
            Some((h, a)) => (h, Some(a)),
            None => (data, None),
        };
        Some(match (head, arg) {
            ("terms", None) => Action::AcceptTerms,
            ("create", None) => Action::CreateVideo,
            ("account", None) => Action::Account,
            ("help", None) => Action::Help,
            ("topup", None) => Action::TopUp,
            ("lang", Some(l)) => Action::SetLanguage(Language::parse(l)?),
            ("tpl", Some(t)) => Action::Template(TemplateId::parse(t).ok()?),
            ("skip", None) => Action::SkipWishes,
            ("lnk", Some("ok")) => Action::ConfirmLinkPhoto,
            ("fa", Some("v")) => Action::Format(FormatChange::Aspect(AspectRatio::Portrait)),
            ("fa", Some("h")) => Action::Format(FormatChange::Aspect(AspectRatio::Landscape)),
            ("fd", Some(s)) => {
                Action::Format(FormatChange::Duration(s.parse().ok().filter(|s| *s <= 600)?))
            }
            ("fm", Some(i)) => {
                Action::Format(FormatChange::Model(i.parse().ok().filter(|i| *i < 100)?))
            }
            ("gal", Some(p)) => {
                Action::MyVideos { page: p.parse().ok().filter(|p| *p <= MAX_GALLERY_PAGE)? }
            }
            ("idea", Some("ok")) => Action::ApproveIdea,
            ("idea", Some("more")) => Action::ExtendIdea,
            ("cnt", Some(n)) => Action::Count(VideoCount::parse(n.parse().ok()?).ok()?),
            ("go", Some(k)) if is_order_token(k) => Action::Start { key: k.to_owned() },
            ("buy", Some(rest)) => {
                let (rail, pack) = rest.split_once(':')?;
                let rail = match rail {
                    "s" => Rail::Stars,
                    "y" => Rail::YooKassa,
                    _ => return None,
                };
                Action::BuyPack { rail, pack: PackId::parse(pack).ok()? }
            }
            _ => return None,
        })
    }
}

fn rail_code(rail: Rail) -> &'static str {
    match rail {
        Rail::Stars => "s",
        Rail::YooKassa => "y",
    }
}

/// A fresh token for a "Start" button: 32 hex characters.
pub fn new_order_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn is_order_token(s: &str) -> bool {
    !s.is_empty() && s.len() <= 40 && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_actions() -> Vec<Action> {
        vec![
            Action::AcceptTerms,
            Action::MainMenu,
            Action::CreateVideo,
            Action::Account,
            Action::Help,
            Action::TopUp,
            Action::SetLanguage(Language::Ru),
            Action::SetLanguage(Language::En),
            Action::Template(TemplateId::parse("a_very-long_template_id_32_chars").expect("ok")),
            Action::SkipWishes,
            Action::ConfirmLinkPhoto,
            Action::Format(FormatChange::Aspect(AspectRatio::Portrait)),
            Action::Format(FormatChange::Aspect(AspectRatio::Landscape)),
            Action::Format(FormatChange::Duration(600)),
            Action::Format(FormatChange::Model(99)),
            Action::MyVideos { page: MAX_GALLERY_PAGE },
            Action::CancelOrder { order_id: OrderId(i64::MAX) },
            Action::ApproveIdea,
            Action::ExtendIdea,
            Action::Count(VideoCount::parse(5).expect("offered")),
            Action::Start { key: new_order_token() },
            Action::MakeAnother { product_id: ProductId(i64::MAX) },
            Action::Retry { order_id: OrderId(i64::MAX) },
            Action::SendVideo { job_id: JobId(i64::MAX) },
            Action::BuyPack {
                rail: Rail::Stars,
                pack: PackId::parse(&"p".repeat(24)).expect("ok"),
            },
            Action::BuyPack { rail: Rail::YooKassa, pack: PackId::parse("pack10").expect("ok") },
        ]
    }

    #[test]
    fn every_action_round_trips_and_fits_telegram_limit() {
        for action in all_actions() {
            let data = action.encode();
            assert!(data.len() <= MAX_CALLBACK_BYTES, "{data} is too long");
            assert_eq!(Action::parse(&data), Some(action), "{data}");
        }
    }

    #[test]
    fn unknown_or_malformed_data_is_rejected() {
        for data in [
            "",
            "mk",
            "mk:",
            "mk:-1",
            "mk:abc",
            "rt:0",
            "vid:0",
            "vid:-3",
            "cnt:2",
            "cnt:x",
            "lang:de",
            "tpl:UGC",
            "go:",
            "go:../x",
            "buy:s:",
            "buy:x:pack10",
            "buy:s:Pack10",
            "buy:pack10",
            "idea:maybe",
            "menu:1",
            "make_another_same_product",
            "retry_generation",
        ] {
            assert_eq!(Action::parse(data), None, "{data:?} must not parse");
        }
    }
}
