//! The YooKassa rail: a payment link per purchase, notifications that are never trusted, and a
//! poller that re-reads open purchases so a lost notification is not lost money.
//!
//! YooKassa's notifications carry no signature. The body is used only for the payment id; the
//! payment is then read from YooKassa's API with the shop's credentials, and only a `succeeded`
//! payment whose amount, currency and metadata match an open purchase is credited — once per
//! payment id, through [`PaymentService::apply`].

use super::checkout::{CheckoutError, ExternalCheckout};
use super::service::PaymentService;
use crate::domain::{PackId, PurchaseId, Rail, UserId};
use crate::i18n::Texts;
use crate::ports::{AccountsError, Charge, ChargeOutcome, ChargeSource};
use crate::yookassa::{
    Amount, CreatePayment, IpAllowList, Notification, PaymentStatus, YooKassaClient, YooKassaError,
};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use teloxide::Bot;

/// How long after opening a purchase the poller keeps re-reading it.
pub const POLL_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// Open purchases re-read per poll.
const POLL_BATCH: u32 = 200;

/// What re-reading one payment found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Credited now.
    Credited,
    /// Credited before (a repeated notification).
    AlreadyRecorded,
    /// Succeeded but does not match its purchase: stored flagged, nothing credited.
    Flagged,
    /// Not paid yet (`pending`, `waiting_for_capture`): nothing to do.
    NotYet,
    /// Canceled at YooKassa: the purchase is closed.
    Canceled,
    /// The payment names no purchase of ours (or YooKassa does not know it): ignored.
    NotOurs,
}

/// Why a payment could not be settled now; retrying later can help.
#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    #[error("YooKassa: {0}")]
    Provider(#[from] YooKassaError),
    #[error(transparent)]
    Store(#[from] AccountsError),
}

/// The YooKassa rail: creating payments, settling them from YooKassa's own answer, polling.
pub struct YooKassaRail {
    client: YooKassaClient,
    service: Arc<PaymentService>,
    return_url: std::sync::OnceLock<String>,
    allowed: Option<IpAllowList>,
    bot: Bot,
    texts: &'static Texts,
}

impl std::fmt::Debug for YooKassaRail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("YooKassaRail")
            .field("return_url", &self.return_url)
            .field("allow_list", &self.allowed.is_some())
            .finish_non_exhaustive()
    }
}

/// What the notification route answers: 200 when handled (or nothing to do, so YooKassa stops
/// resending), 403 for a sender outside the allow-list, 400 for a body that names no payment,
/// 503 when YooKassa or the store could not be reached (YooKassa resends later).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationAnswer {
    Handled,
    Forbidden,
    Malformed,
    RetryLater,
}

impl YooKassaRail {
    /// A rail creating payments with `client`. `return_url` is where YooKassa sends the payer
    /// back; when `None`, set it later with [`YooKassaRail::set_bot_username`]. `allowed`
    /// limits notification senders (`None` accepts any: every notification is re-read from
    /// YooKassa anyway).
    pub fn new(
        client: YooKassaClient,
        service: Arc<PaymentService>,
        return_url: Option<String>,
        allowed: Option<IpAllowList>,
        bot: Bot,
        texts: &'static Texts,
    ) -> Self {
        let cell = std::sync::OnceLock::new();
        if let Some(url) = return_url {
            let _ = cell.set(url);
        }
        Self { client, service, return_url: cell, allowed, bot, texts }
    }

    /// Sends payers back to `https://t.me/<username>`, unless a return URL was configured.
    pub fn set_bot_username(&self, username: &str) {
        let _ = self.return_url.set(format!("https://t.me/{username}"));
    }

    /// Handles one notification from `peer`: checks the sender, takes only the payment id from
    /// the body, and settles that payment from YooKassa's own answer.
    pub async fn on_notification(&self, peer: IpAddr, body: &[u8]) -> NotificationAnswer {
        if let Some(allowed) = &self.allowed {
            if !allowed.allows(peer) {
                tracing::warn!(%peer, "YooKassa notification from an address outside the allow-list refused");
                return NotificationAnswer::Forbidden;
            }
        }
        let Some(payment_id) =
            Notification::parse(body).ok().and_then(|n| n.payment_id().map(str::to_owned))
        else {
            tracing::warn!(%peer, "YooKassa notification without a payment id refused");
            return NotificationAnswer::Malformed;
        };
        match self.settle(&payment_id, ChargeSource::Notification).await {
            Ok(settled) => {
                tracing::info!(outcome = ?settled, "YooKassa notification handled");
                NotificationAnswer::Handled
            }
            Err(e) => {
                tracing::warn!(error = %e, "YooKassa notification not settled; YooKassa will resend it");
                NotificationAnswer::RetryLater
            }
        }
    }

    /// Reads the payment from YooKassa and acts on what YooKassa says (never on what a caller
    /// claimed): credits a matching `succeeded` payment once, closes a canceled purchase.
    pub async fn settle(
        &self,
        payment_id: &str,
        source: ChargeSource,
    ) -> Result<Settled, SettleError> {
        let payment = match self.client.get_payment(payment_id).await {
            Ok(p) => p,
            Err(e) if e.is_not_found() => return Ok(Settled::NotOurs),
            Err(e) => return Err(e.into()),
        };
        let Some(purchase_id) = payment.purchase_id().and_then(PurchaseId::parse) else {
            return Ok(Settled::NotOurs);
        };
        match payment.status {
            PaymentStatus::Succeeded if payment.paid => {}
            PaymentStatus::Canceled => {
                self.service.payments.cancel_purchase(purchase_id).await?;
                return Ok(Settled::Canceled);
            }
            _ => return Ok(Settled::NotYet),
        }
        let Some(purchase) = self.service.payments.purchase(purchase_id).await? else {
            return Ok(Settled::NotOurs);
        };
        // The payer is the purchase's owner as YooKassa echoes it; a different user id in the
        // metadata is a mismatch and gets flagged by the store.
        let payer = payment.user_id().map(UserId).unwrap_or(purchase.user_id);
        let charge = Charge {
            rail: Rail::YooKassa,
            charge_id: payment.id.clone(),
            purchase_id,
            user_id: payer,
            amount: payment.amount.kopecks,
            currency: payment.amount.currency.clone(),
            source,
        };
        Ok(match self.service.apply(&charge).await? {
            ChargeOutcome::Credited { credits, balance, referral, .. } => {
                if source == ChargeSource::Poll {
                    self.service.metrics.reconciled(Rail::YooKassa);
                }
                super::notify::credited(
                    &self.bot,
                    &self.service,
                    self.texts,
                    payer,
                    credits,
                    balance,
                )
                .await;
                if let Some(r) = referral {
                    super::notify::referrer(
                        &self.bot,
                        &self.service,
                        self.texts,
                        r.referrer,
                        r.bonus,
                    )
                    .await;
                }
                Settled::Credited
            }
            ChargeOutcome::AlreadyRecorded => Settled::AlreadyRecorded,
            ChargeOutcome::Flagged(_) => Settled::Flagged,
        })
    }

    /// Re-reads every open purchase opened within [`POLL_WINDOW`] that has a YooKassa payment.
    /// Returns how many were credited now.
    pub async fn poll_once(&self) -> Result<u32, SettleError> {
        let since = chrono::Utc::now()
            - chrono::Duration::from_std(POLL_WINDOW).unwrap_or_else(|_| chrono::Duration::days(1));
        let open = self.service.payments.open_purchases(Rail::YooKassa, since, POLL_BATCH).await?;
        let mut credited = 0;
        for purchase in open {
            let Some(payment_id) = purchase.provider_payment_id.as_deref() else { continue };
            match self.settle(payment_id, ChargeSource::Poll).await {
                Ok(Settled::Credited) => credited += 1,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(purchase_id = %purchase.id, error = %e, "open YooKassa purchase not re-read")
                }
            }
        }
        Ok(credited)
    }

    /// Polls every `every` until `shutdown` resolves.
    pub async fn run_poller(
        self: Arc<Self>,
        every: Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tick.tick() => {}
            }
            match self.poll_once().await {
                Ok(0) => {}
                Ok(n) => tracing::warn!(
                    credited = n,
                    "YooKassa payments credited by polling (their notification was lost or late)"
                ),
                Err(e) => tracing::warn!(error = %e, "YooKassa poll failed; retrying later"),
            }
        }
    }
}

#[async_trait::async_trait]
impl ExternalCheckout for YooKassaRail {
    fn rail(&self) -> Rail {
        Rail::YooKassa
    }

    async fn start(&self, user: UserId, pack: &PackId) -> Result<String, CheckoutError> {
        let (purchase, pack) =
            self.service.open(user, Rail::YooKassa, pack).await.map_err(|e| match e {
                super::OpenPurchaseError::NotOnSale(p) => CheckoutError::NotOnSale(p),
                super::OpenPurchaseError::Store(e) => CheckoutError::Unavailable(e.to_string()),
            })?;
        let request = CreatePayment {
            purchase_id: purchase.id.to_string(),
            user_id: user.get(),
            amount: Amount::rub(purchase.amount),
            description: format!("Neurocards: {} ({} credits)", pack.name.en, pack.credits),
            return_url: self.return_url.get().cloned().unwrap_or_else(|| "https://t.me/".into()),
        };
        // One retry of an unknown result, with the same Idempotence-Key: YooKassa answers with
        // the payment it already made, never a second one.
        let payment = match self.client.create_payment(&request).await {
            Err(e) if e.is_retryable() => self.client.create_payment(&request).await,
            other => other,
        }
        .map_err(|e| {
            if e.is_retryable() {
                CheckoutError::Unavailable(e.to_string())
            } else {
                CheckoutError::Rejected(e.to_string())
            }
        })?;
        let url = payment
            .confirmation_url()
            .ok_or_else(|| CheckoutError::Rejected("the payment has no confirmation URL".into()))?
            .to_owned();
        self.service
            .payments
            .set_provider_payment(purchase.id, &payment.id, &url)
            .await
            .map_err(|e| CheckoutError::Unavailable(e.to_string()))?;
        tracing::info!(user_id = %user, purchase_id = %purchase.id, "YooKassa payment created");
        Ok(url)
    }
}
