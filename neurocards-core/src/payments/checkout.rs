//! A rail that takes the payment on an outside page (YooKassa): the bot shows a link, and the
//! payment is credited later from the provider's own answer, never from what the user or a
//! notification body claims.

use crate::domain::{PackId, Rail, UserId};

/// Why a checkout link could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    #[error("pack {0} is not on sale on this rail")]
    NotOnSale(PackId),
    /// The provider or the store did not answer; trying again later can help.
    #[error("the payment provider is unavailable: {0}")]
    Unavailable(String),
    /// The provider refused the request (bad credentials, invalid request): an operator must act.
    #[error("the payment provider refused the payment: {0}")]
    Rejected(String),
}

/// A rail paid on an outside page.
#[async_trait::async_trait]
pub trait ExternalCheckout: Send + Sync {
    fn rail(&self) -> Rail;

    /// Opens a purchase of `pack` for `user` at the catalogue's price and creates the
    /// provider's payment for it (idempotently, keyed on the purchase); returns the page where
    /// the user pays.
    async fn start(&self, user: UserId, pack: &PackId) -> Result<String, CheckoutError>;
}
