//! Buying packs, independent of the rail: opening a purchase at the catalogue's price, deciding
//! whether a payment may go ahead, and crediting a payment once.

use super::catalogue::{Pack, PackCatalogue};
use super::metrics::PaymentMetrics;
use crate::domain::{Credits, PackId, PurchaseId, Rail, UserId};
use crate::ports::{
    Accounts, AccountsError, Charge, ChargeOutcome, NewPurchase, Payments, Purchase, PurchaseStatus,
};
use std::sync::Arc;

/// The Stars invoice payload for a purchase: `p:` and the purchase id (34 bytes; Telegram allows
/// 128). The payload names the purchase only; prices are read from the stored purchase.
pub fn invoice_payload(id: PurchaseId) -> String {
    format!("p:{id}")
}

/// The purchase an invoice payload names, when it is one of ours.
pub fn parse_invoice_payload(payload: &str) -> Option<PurchaseId> {
    payload.strip_prefix("p:").and_then(PurchaseId::parse)
}

/// Why a purchase could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenPurchaseError {
    #[error("pack {0} is not on sale on this rail")]
    NotOnSale(PackId),
    #[error(transparent)]
    Store(#[from] AccountsError),
}

/// Why a payment may not go ahead (the pre-checkout answer). Each has its own text for the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PaymentRefusal {
    #[error("the invoice is not one of ours")]
    UnknownInvoice,
    #[error("the invoice belongs to another user")]
    NotYours,
    #[error("the invoice was already paid")]
    AlreadyPaid,
    #[error("the invoice was canceled")]
    Canceled,
    #[error("the pack is no longer on sale")]
    PackGone,
    #[error("the price changed since the invoice was sent")]
    PriceChanged,
    #[error("the user is banned")]
    Banned,
    #[error("the purchase could not be read")]
    Unavailable,
}

impl PaymentRefusal {
    /// The locale key of the text the user sees.
    pub fn text_key(self) -> &'static str {
        match self {
            PaymentRefusal::UnknownInvoice => "bot.buy.refused_unknown",
            PaymentRefusal::NotYours => "bot.buy.refused_not_yours",
            PaymentRefusal::AlreadyPaid => "bot.buy.refused_paid",
            PaymentRefusal::Canceled => "bot.buy.refused_canceled",
            PaymentRefusal::PackGone => "bot.buy.refused_pack_gone",
            PaymentRefusal::PriceChanged => "bot.buy.refused_price",
            PaymentRefusal::Banned => "bot.buy.refused_banned",
            PaymentRefusal::Unavailable => "bot.buy.refused_unavailable",
        }
    }

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentRefusal::UnknownInvoice => "unknown_invoice",
            PaymentRefusal::NotYours => "not_yours",
            PaymentRefusal::AlreadyPaid => "already_paid",
            PaymentRefusal::Canceled => "canceled",
            PaymentRefusal::PackGone => "pack_gone",
            PaymentRefusal::PriceChanged => "price_changed",
            PaymentRefusal::Banned => "banned",
            PaymentRefusal::Unavailable => "unavailable",
        }
    }
}

/// Packs, purchases and crediting, shared by every rail.
pub struct PaymentService {
    pub payments: Arc<dyn Payments>,
    pub accounts: Arc<dyn Accounts>,
    pub catalogue: Arc<PackCatalogue>,
    /// Credits a referrer gets when a referred user's first purchase is credited; 0 turns the
    /// bonus off.
    pub referral_bonus: Credits,
    pub metrics: PaymentMetrics,
}

impl std::fmt::Debug for PaymentService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentService")
            .field("packs", &self.catalogue.iter().count())
            .field("referral_bonus", &self.referral_bonus)
            .finish_non_exhaustive()
    }
}

impl PaymentService {
    pub fn new(
        payments: Arc<dyn Payments>,
        accounts: Arc<dyn Accounts>,
        catalogue: Arc<PackCatalogue>,
        referral_bonus: Credits,
    ) -> Self {
        Self { payments, accounts, catalogue, referral_bonus, metrics: PaymentMetrics::default() }
    }

    /// Opens a purchase of `pack` on `rail` at the catalogue's current price.
    pub async fn open(
        &self,
        user: UserId,
        rail: Rail,
        pack: &PackId,
    ) -> Result<(Purchase, Pack), OpenPurchaseError> {
        let pack =
            self.catalogue.get(pack).ok_or_else(|| OpenPurchaseError::NotOnSale(pack.clone()))?;
        let amount =
            pack.price(rail).ok_or_else(|| OpenPurchaseError::NotOnSale(pack.id.clone()))?;
        let purchase = self
            .payments
            .open_purchase(&NewPurchase {
                id: PurchaseId::new(),
                user_id: user,
                rail,
                pack: pack.id.clone(),
                credits: pack.credits,
                amount,
                currency: rail.currency().to_owned(),
            })
            .await?;
        tracing::info!(user_id = %user, purchase_id = %purchase.id, rail = %rail, pack = %pack.id, "purchase opened");
        Ok((purchase, pack.clone()))
    }

    /// Whether `payer` may pay `amount` `currency` for the purchase named by an invoice
    /// payload: the purchase exists, is theirs, is open, its pack is still on sale at the same
    /// price, the amount is that price, and the payer is not banned. Reads only.
    pub async fn check_payment(
        &self,
        payer: UserId,
        payload: &str,
        currency: &str,
        amount: i64,
    ) -> Result<Purchase, PaymentRefusal> {
        let result = self.check_payment_inner(payer, payload, currency, amount).await;
        if let Err(refusal) = result {
            self.metrics.refused(refusal);
            tracing::info!(user_id = %payer, reason = refusal.as_str(), "payment refused before checkout");
        }
        result
    }

    async fn check_payment_inner(
        &self,
        payer: UserId,
        payload: &str,
        currency: &str,
        amount: i64,
    ) -> Result<Purchase, PaymentRefusal> {
        let id = parse_invoice_payload(payload).ok_or(PaymentRefusal::UnknownInvoice)?;
        let (purchase, user) = tokio::join!(self.payments.purchase(id), self.accounts.user(payer));
        let purchase = purchase
            .map_err(|_| PaymentRefusal::Unavailable)?
            .ok_or(PaymentRefusal::UnknownInvoice)?;
        let user = user.map_err(|_| PaymentRefusal::Unavailable)?;
        if purchase.user_id != payer {
            return Err(PaymentRefusal::NotYours);
        }
        if user.is_some_and(|u| u.banned) {
            return Err(PaymentRefusal::Banned);
        }
        match purchase.status {
            PurchaseStatus::Open => {}
            PurchaseStatus::Paid => return Err(PaymentRefusal::AlreadyPaid),
            PurchaseStatus::Canceled => return Err(PaymentRefusal::Canceled),
        }
        let pack = self.catalogue.get(&purchase.pack).ok_or(PaymentRefusal::PackGone)?;
        let current = pack.price(purchase.rail).ok_or(PaymentRefusal::PackGone)?;
        if current != purchase.amount
            || pack.credits != purchase.credits
            || amount != purchase.amount
            || currency != purchase.currency
        {
            return Err(PaymentRefusal::PriceChanged);
        }
        Ok(purchase)
    }

    /// Credits a payment once per charge id (see [`Payments::record_charge`]), counts it, and
    /// logs what happened. A flagged charge is logged at `warn` for the operator.
    pub async fn apply(&self, charge: &Charge) -> Result<ChargeOutcome, AccountsError> {
        let outcome = self.payments.record_charge(charge, self.referral_bonus).await?;
        let span = tracing::info_span!(
            "charge",
            user_id = %charge.user_id,
            purchase_id = %charge.purchase_id,
            rail = %charge.rail,
            source = charge.source.as_str(),
        );
        let _entered = span.enter();
        match &outcome {
            ChargeOutcome::Credited { pack, credits, referral, .. } => {
                self.metrics.credited(charge.rail, pack, &charge.currency, charge.amount);
                tracing::info!(%pack, %credits, referral = referral.is_some(), "payment credited");
            }
            ChargeOutcome::AlreadyRecorded => {
                self.metrics.duplicate(charge.rail);
                tracing::info!("payment already recorded");
            }
            ChargeOutcome::Flagged(mismatch) => {
                self.metrics.flagged(charge.rail, *mismatch);
                tracing::warn!(mismatch = mismatch.as_str(), amount = charge.amount, currency = %charge.currency, "payment does not match its purchase; flagged, nothing credited");
            }
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::{MockAccounts, MockPayments, User};
    use chrono::Utc;

    fn purchase(user: i64, status: PurchaseStatus, amount: i64) -> Purchase {
        Purchase {
            id: PurchaseId::new(),
            user_id: UserId(user),
            rail: Rail::Stars,
            pack: PackId::parse("pack10").expect("id"),
            credits: Credits::new(10).expect("credits"),
            amount,
            currency: "XTR".into(),
            status,
            provider_payment_id: None,
            confirmation_url: None,
            created_at: Utc::now(),
        }
    }

    fn user(id: i64, banned: bool) -> User {
        User {
            id: UserId(id),
            username: None,
            first_name: None,
            language: crate::domain::Language::Ru,
            consent_at: None,
            banned,
            blocked_bot_at: None,
            balance: Credits::ZERO,
            created_at: Utc::now(),
        }
    }

    fn service(stored: Purchase, payer: User) -> PaymentService {
        let mut payments = MockPayments::new();
        payments.expect_purchase().returning(move |_| Ok(Some(stored.clone())));
        let mut accounts = MockAccounts::new();
        accounts.expect_user().returning(move |_| Ok(Some(payer.clone())));
        PaymentService::new(
            Arc::new(payments),
            Arc::new(accounts),
            Arc::new(PackCatalogue::builtin()),
            Credits::ZERO,
        )
    }

    #[tokio::test]
    async fn pre_checkout_accepts_only_the_owner_paying_the_current_price() {
        let p = purchase(7, PurchaseStatus::Open, 450);
        let payload = invoice_payload(p.id);
        let ok = service(p.clone(), user(7, false));
        assert!(ok.check_payment(UserId(7), &payload, "XTR", 450).await.is_ok());
        assert_eq!(
            ok.check_payment(UserId(7), &payload, "XTR", 449).await.err(),
            Some(PaymentRefusal::PriceChanged)
        );
        assert_eq!(
            ok.check_payment(UserId(7), &payload, "RUB", 450).await.err(),
            Some(PaymentRefusal::PriceChanged)
        );
        assert_eq!(
            ok.check_payment(UserId(7), "garbage", "XTR", 450).await.err(),
            Some(PaymentRefusal::UnknownInvoice)
        );
        let other = service(p.clone(), user(8, false));
        assert_eq!(
            other.check_payment(UserId(8), &payload, "XTR", 450).await.err(),
            Some(PaymentRefusal::NotYours)
        );
        let banned = service(p.clone(), user(7, true));
        assert_eq!(
            banned.check_payment(UserId(7), &payload, "XTR", 450).await.err(),
            Some(PaymentRefusal::Banned)
        );
        let paid = service(purchase(7, PurchaseStatus::Paid, 450), user(7, false));
        let payload = invoice_payload(paid_id(&paid).await);
        assert_eq!(
            paid.check_payment(UserId(7), &payload, "XTR", 450).await.err(),
            Some(PaymentRefusal::AlreadyPaid)
        );
        // The catalogue's price moved since the purchase was opened.
        let old_price = service(purchase(7, PurchaseStatus::Open, 400), user(7, false));
        let payload = invoice_payload(paid_id(&old_price).await);
        assert_eq!(
            old_price.check_payment(UserId(7), &payload, "XTR", 400).await.err(),
            Some(PaymentRefusal::PriceChanged)
        );
        assert!(ok.metrics.render().contains("reason=\"price_changed\""));
    }

    async fn paid_id(s: &PaymentService) -> PurchaseId {
        s.payments.purchase(PurchaseId::new()).await.ok().flatten().map(|p| p.id).expect("stored")
    }

    #[test]
    fn invoice_payloads_round_trip_and_fit_telegram() {
        let id = PurchaseId::new();
        let payload = invoice_payload(id);
        assert!(payload.len() <= 128);
        assert_eq!(parse_invoice_payload(&payload), Some(id));
        assert_eq!(parse_invoice_payload("x:1"), None);
    }
}
