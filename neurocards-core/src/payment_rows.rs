//! What both stores' [`Payments`](crate::ports::Payments) share: the checks made before a
//! write (so a bad value is refused with a message, not a constraint name), stored text read
//! back as domain values, and the refund decision.

use crate::domain::{Credits, PackId, Rail, UserId};
use crate::ports::{
    AccountsError, ChargeSource, Mismatch, NewPurchase, PurchaseStatus, RefundCheck,
};
use anyhow::anyhow;

/// Refuses a purchase the schema would refuse: no credits, no price, or a currency that is not
/// its rail's.
pub(crate) fn check_new_purchase(p: &NewPurchase) -> Result<(), AccountsError> {
    if p.credits == Credits::ZERO || p.amount <= 0 || p.currency != p.rail.currency() {
        return Err(AccountsError::Unexpected(anyhow!(
            "a purchase needs credits > 0, amount > 0 and its rail's currency \
             (got {} credits for {} {} on {})",
            p.credits,
            p.amount,
            p.currency,
            p.rail
        )));
    }
    Ok(())
}

/// Refuses a provider charge id the schema would refuse (empty or over 128 bytes).
pub(crate) fn check_charge_id(charge_id: &str) -> Result<(), AccountsError> {
    if charge_id.is_empty() || charge_id.len() > 128 {
        return Err(AccountsError::Unexpected(anyhow!(
            "a provider charge id has 1 to 128 bytes (got {})",
            charge_id.len()
        )));
    }
    Ok(())
}

/// A stored count (never negative) as `u64`.
pub(crate) fn count(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A reconciliation position as stored (`bigint`).
pub(crate) fn stored_position(p: u64) -> Result<i64, AccountsError> {
    i64::try_from(p)
        .map_err(|_| AccountsError::Unexpected(anyhow!("reconcile position {p} is out of range")))
}

pub(crate) fn credits(v: i64) -> Result<Credits, AccountsError> {
    Credits::new(v).map_err(|e| AccountsError::Unexpected(anyhow!("stored credits: {e}")))
}

pub(crate) fn rail(s: &str) -> Result<Rail, AccountsError> {
    Rail::parse(s).ok_or_else(|| AccountsError::Unexpected(anyhow!("rail column holds {s:?}")))
}

pub(crate) fn pack(s: &str) -> Result<PackId, AccountsError> {
    PackId::parse(s).map_err(|e| AccountsError::Unexpected(anyhow!("purchases.pack: {e}")))
}

pub(crate) fn status(s: &str) -> Result<PurchaseStatus, AccountsError> {
    PurchaseStatus::parse(s)
        .ok_or_else(|| AccountsError::Unexpected(anyhow!("purchases.status holds {s:?}")))
}

pub(crate) fn source(s: &str) -> Result<ChargeSource, AccountsError> {
    ChargeSource::parse(s)
        .ok_or_else(|| AccountsError::Unexpected(anyhow!("payment_charges.source holds {s:?}")))
}

pub(crate) fn mismatch(s: &str) -> Result<Mismatch, AccountsError> {
    Mismatch::parse(s)
        .ok_or_else(|| AccountsError::Unexpected(anyhow!("payment_charges.mismatch holds {s:?}")))
}

/// A charge as the refund decision needs it, read with its payer's balance.
#[derive(Debug)]
pub(crate) struct RefundFacts {
    pub user_id: i64,
    pub credits: i64,
    pub amount: i64,
    pub currency: String,
    pub flagged: bool,
    pub refunded: bool,
    /// `None` when the payer's row is missing (never for a credited charge).
    pub balance: Option<i64>,
}

/// Whether the charge can be refunded now: the whole pack or nothing.
pub(crate) fn refund_check(facts: Option<RefundFacts>) -> Result<RefundCheck, AccountsError> {
    let Some(f) = facts else { return Ok(RefundCheck::Unknown) };
    if f.flagged {
        return Ok(RefundCheck::NotCredited);
    }
    if f.refunded {
        return Ok(RefundCheck::AlreadyRefunded);
    }
    let user_id = UserId(f.user_id);
    let given = credits(f.credits)?;
    let balance = credits(f.balance.ok_or(AccountsError::UnknownUser(user_id))?)?;
    Ok(if balance >= given {
        RefundCheck::Refundable { user_id, credits: given, amount: f.amount, currency: f.currency }
    } else {
        RefundCheck::Spent { user_id, credits: given, balance }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::PurchaseId;

    fn facts(credits: i64, balance: i64) -> RefundFacts {
        RefundFacts {
            user_id: 7,
            credits,
            amount: 100,
            currency: "XTR".to_owned(),
            flagged: false,
            refunded: false,
            balance: Some(balance),
        }
    }

    #[test]
    fn refunds_take_the_whole_pack_or_nothing() {
        assert_eq!(refund_check(None).expect("decided"), RefundCheck::Unknown);
        assert!(matches!(
            refund_check(Some(facts(10, 10))).expect("decided"),
            RefundCheck::Refundable { amount: 100, .. }
        ));
        assert!(matches!(
            refund_check(Some(facts(10, 9))).expect("decided"),
            RefundCheck::Spent { .. }
        ));
        let flagged = RefundFacts { flagged: true, ..facts(0, 0) };
        assert_eq!(refund_check(Some(flagged)).expect("decided"), RefundCheck::NotCredited);
        let refunded = RefundFacts { refunded: true, ..facts(10, 10) };
        assert_eq!(refund_check(Some(refunded)).expect("decided"), RefundCheck::AlreadyRefunded);
    }

    #[test]
    fn bad_purchases_and_charge_ids_are_refused() {
        let good = NewPurchase {
            id: PurchaseId::new(),
            user_id: UserId(1),
            rail: Rail::Stars,
            pack: PackId::parse("pack10").expect("valid"),
            credits: Credits::new(10).expect("valid"),
            amount: 100,
            currency: "XTR".to_owned(),
        };
        assert!(check_new_purchase(&good).is_ok());
        assert!(check_new_purchase(&NewPurchase { amount: 0, ..good.clone() }).is_err());
        assert!(
            check_new_purchase(&NewPurchase { credits: Credits::ZERO, ..good.clone() }).is_err()
        );
        assert!(check_new_purchase(&NewPurchase { currency: "RUB".to_owned(), ..good }).is_err());
        assert!(check_charge_id("ch_1").is_ok());
        assert!(check_charge_id("").is_err());
        assert!(check_charge_id(&"x".repeat(129)).is_err());
        assert!(stored_position(u64::MAX).is_err());
    }
}
