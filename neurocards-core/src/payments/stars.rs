//! Telegram Stars: invoices, reconciliation over `getStarTransactions`, and refunds.
//!
//! A `successful_payment` update can be lost (teloxide confirms a batch of updates before its
//! handlers finish) as well as repeated, so crediting is keyed on the charge id in the database
//! and [`StarsReconciler`] walks the bot's Star transactions to credit any payment whose update
//! never arrived.

use super::catalogue::Pack;
use super::service::{invoice_payload, parse_invoice_payload, PaymentService};
use crate::domain::{Credits, Language, PurchaseId, Rail, UserId};
use crate::i18n::Texts;
use crate::ports::{
    AccountsError, Charge, ChargeOutcome, ChargeSource, Purchase, RefundCheck, RefundOutcome,
};
use std::sync::Arc;
use std::time::Duration;
use teloxide::prelude::*;
use teloxide::types::{LabeledPrice, StarTransaction, TelegramTransactionId, TransactionPartner};
use teloxide::ApiError;

/// Transactions read per `getStarTransactions` call (Telegram's maximum).
const PAGE: u8 = 100;
/// Pages read per reconciliation pass, so one pass is bounded.
const MAX_PAGES: u32 = 50;

/// Sends the Stars invoice for an open purchase: one price item in `XTR`, no provider token,
/// no tips (Telegram refuses Stars invoices with either).
pub async fn send_invoice(
    bot: &Bot,
    chat: ChatId,
    purchase: &Purchase,
    pack: &Pack,
    texts: &Texts,
    lang: Language,
) -> Result<Message, teloxide::RequestError> {
    let title = pack.name.get(lang).to_owned();
    let description = texts.render(
        lang,
        "bot.buy.invoice_description",
        &[("credits", &pack.credits.to_string())],
    );
    let amount = u32::try_from(purchase.amount).unwrap_or(u32::MAX);
    bot.send_invoice(
        chat,
        title.clone(),
        description,
        invoice_payload(purchase.id),
        Rail::Stars.currency(),
        [LabeledPrice::new(title, amount)],
    )
    .await
}

/// The charge a Star transaction records, when it is an invoice payment to this bot. A payload
/// that names no purchase of ours gives [`PurchaseId::UNKNOWN`], so the payment is stored
/// flagged for the operator rather than ignored.
pub fn charge_of(tx: &StarTransaction) -> Option<Charge> {
    let Some(TransactionPartner::User(partner)) = &tx.source else {
        return None;
    };
    let payment = partner.kind.invoice_payment()?;
    let purchase_id = payment
        .invoice_payload
        .as_deref()
        .and_then(parse_invoice_payload)
        .unwrap_or(PurchaseId::UNKNOWN);
    let charge_id = tx.id.0.clone();
    if charge_id.is_empty() || charge_id.len() > 128 {
        return None;
    }
    Some(Charge {
        rail: Rail::Stars,
        charge_id,
        purchase_id,
        user_id: UserId(partner.user.id.0 as i64),
        amount: i64::from(tx.amount),
        currency: Rail::Stars.currency().to_owned(),
        source: ChargeSource::Reconciliation,
    })
}

/// What one reconciliation pass found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Transactions read.
    pub read: u64,
    /// Payments credited now (their update was lost or is still coming).
    pub credited: u64,
    /// Payments that did not match their purchase.
    pub flagged: u64,
    /// Of the flagged, invoice payments whose payload is not one of ours.
    pub foreign: u64,
}

/// Why a reconciliation pass stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("getStarTransactions failed: {0}")]
    Telegram(#[from] teloxide::RequestError),
    #[error(transparent)]
    Store(#[from] AccountsError),
}

/// Walks the bot's Star transactions from the stored position, credits every invoice payment
/// not credited yet (the same exactly-once path as the update), tells its payer, and moves the
/// position past each fully read page. Safe to run in every replica at once.
#[derive(Clone)]
pub struct StarsReconciler {
    pub bot: Bot,
    pub service: Arc<PaymentService>,
    pub texts: &'static Texts,
}

impl std::fmt::Debug for StarsReconciler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StarsReconciler").finish_non_exhaustive()
    }
}

impl StarsReconciler {
    /// One pass: at most [`MAX_PAGES`] pages of transactions.
    pub async fn run_once(&self) -> Result<ReconcileReport, ReconcileError> {
        let payments = &self.service.payments;
        let mut position = payments.reconcile_cursor(Rail::Stars).await?;
        let mut report = ReconcileReport::default();
        for _ in 0..MAX_PAGES {
            let offset = u32::try_from(position).unwrap_or(u32::MAX);
            let page = self.bot.get_star_transactions().offset(offset).limit(PAGE).await?;
            let n = page.transactions.len() as u64;
            for tx in &page.transactions {
                report.read += 1;
                self.settle(tx, &mut report).await?;
            }
            if n < u64::from(PAGE) {
                // The last page may still grow: keep the position before it, so it is read again.
                break;
            }
            position += n;
            payments.set_reconcile_cursor(Rail::Stars, position).await?;
        }
        Ok(report)
    }

    async fn settle(
        &self,
        tx: &StarTransaction,
        report: &mut ReconcileReport,
    ) -> Result<(), ReconcileError> {
        let Some(charge) = charge_of(tx) else {
            return Ok(());
        };
        if charge.purchase_id == PurchaseId::UNKNOWN {
            report.foreign += 1;
        }
        match self.service.apply(&charge).await? {
            ChargeOutcome::Credited { credits, balance, referral, .. } => {
                report.credited += 1;
                self.service.metrics.reconciled(Rail::Stars);
                tracing::info!(user_id = %charge.user_id, purchase_id = %charge.purchase_id, "payment credited by reconciliation");
                super::notify::credited(
                    &self.bot,
                    self.service.as_ref(),
                    self.texts,
                    charge.user_id,
                    credits,
                    balance,
                )
                .await;
                if let Some(r) = referral {
                    super::notify::referrer(
                        &self.bot,
                        self.service.as_ref(),
                        self.texts,
                        r.referrer,
                        r.bonus,
                    )
                    .await;
                }
            }
            ChargeOutcome::Flagged(_) => report.flagged += 1,
            ChargeOutcome::AlreadyRecorded => {}
        }
        Ok(())
    }

    /// Runs a pass now and then every `every`, until `shutdown` resolves. Failures are logged
    /// and retried at the next tick.
    pub async fn run(self, every: Duration, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tick.tick() => {}
            }
            match self.run_once().await {
                Ok(r) if r.credited > 0 || r.flagged > 0 || r.foreign > 0 => {
                    tracing::warn!(
                        read = r.read,
                        credited = r.credited,
                        flagged = r.flagged,
                        foreign = r.foreign,
                        "Stars reconciliation found payments the updates missed"
                    );
                }
                Ok(r) => tracing::debug!(read = r.read, "Stars reconciliation pass"),
                Err(e) => {
                    tracing::warn!(error = %e, "Stars reconciliation pass failed; retrying later")
                }
            }
        }
    }
}

/// What an admin's refund did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StarsRefund {
    /// Refunded at Telegram and the pack's credits taken back.
    Refunded {
        user_id: UserId,
        debited: Credits,
        shortfall: Credits,
        balance: Credits,
    },
    /// A flagged payment (no credits were given): refunded at Telegram only.
    RefundedUncredited {
        user_id: UserId,
    },
    /// Refused: the user spent part of the pack (policy: the whole pack or nothing).
    Spent {
        user_id: UserId,
        credits: Credits,
        balance: Credits,
    },
    AlreadyRefunded,
    Unknown,
    /// Telegram refused the refund; nothing was written.
    TelegramRefused(String),
}

/// Refunds a Stars payment: checks the ledger, asks Telegram (`refundStarPayment`; an
/// "already refunded" answer counts as done), then writes the `purchase_refund` entry once.
pub async fn refund(
    bot: &Bot,
    service: &PaymentService,
    charge_id: &str,
) -> Result<StarsRefund, AccountsError> {
    let payments = &service.payments;
    let Some(record) = payments.charge(Rail::Stars, charge_id).await? else {
        return Ok(StarsRefund::Unknown);
    };
    match payments.refund_check(Rail::Stars, charge_id).await? {
        RefundCheck::Refundable { .. } | RefundCheck::NotCredited => {}
        RefundCheck::Spent { user_id, credits, balance } => {
            return Ok(StarsRefund::Spent { user_id, credits, balance })
        }
        RefundCheck::AlreadyRefunded => return Ok(StarsRefund::AlreadyRefunded),
        RefundCheck::Unknown => return Ok(StarsRefund::Unknown),
    }
    let user = teloxide::types::UserId(record.user_id.get() as u64);
    match bot.refund_star_payment(user, TelegramTransactionId(charge_id.to_owned())).await {
        Ok(_) => {}
        Err(teloxide::RequestError::Api(ApiError::Unknown(text)))
            if text.contains("CHARGE_ALREADY_REFUNDED") => {}
        Err(e) => return Ok(StarsRefund::TelegramRefused(e.to_string())),
    }
    let outcome = payments.record_refund(Rail::Stars, charge_id).await?;
    service.metrics.refunded(Rail::Stars);
    tracing::info!(user_id = %record.user_id, purchase_id = %record.purchase_id, "Stars payment refunded");
    Ok(match outcome {
        RefundOutcome::Recorded { user_id, debited, shortfall, balance } => {
            StarsRefund::Refunded { user_id, debited, shortfall, balance }
        }
        RefundOutcome::NotCredited => StarsRefund::RefundedUncredited { user_id: record.user_id },
        RefundOutcome::AlreadyRefunded => StarsRefund::AlreadyRefunded,
        RefundOutcome::Unknown => StarsRefund::Unknown,
    })
}
