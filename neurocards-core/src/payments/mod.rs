//! Selling credit packs: the catalogue, purchases at a fixed price, crediting each payment
//! exactly once, reconciliation of lost payment updates, refunds, and referral bonuses.
//!
//! Telegram Stars is the default rail (Telegram requires Stars for digital goods sold inside
//! Telegram); YooKassa is an optional second rail. Every payment, whatever the rail and however
//! it reached us (update, notification, reconciliation, polling), goes through
//! [`PaymentService::apply`] and so through the store's one unique charge row.

pub mod catalogue;
pub mod checkout;
pub mod metrics;
#[cfg(feature = "telegram")]
pub mod notify;
pub mod referral;
pub mod service;
#[cfg(feature = "telegram")]
pub mod stars;
#[cfg(all(feature = "telegram", feature = "yookassa"))]
pub mod yookassa_rail;

pub use catalogue::{format_rub, Pack, PackCatalogue, PackCatalogueError};
pub use metrics::PaymentMetrics;
pub use service::{
    invoice_payload, parse_invoice_payload, OpenPurchaseError, PaymentRefusal, PaymentService,
};
