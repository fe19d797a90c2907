//! Credits: the bot's currency. One video costs one credit by default.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A non-negative amount of credits. Ledger entries are signed ([`LedgerDelta`]); balances and
/// prices are `Credits`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(try_from = "i64", into = "i64")]
pub struct Credits(i64);

/// A negative amount where credits were expected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("credits cannot be negative (got {0})")]
pub struct NegativeCredits(pub i64);

impl Credits {
    pub const ZERO: Credits = Credits(0);

    pub fn new(amount: i64) -> Result<Self, NegativeCredits> {
        if amount < 0 {
            Err(NegativeCredits(amount))
        } else {
            Ok(Self(amount))
        }
    }

    pub fn get(self) -> i64 {
        self.0
    }

    /// `self - other`, or `None` when that would be negative.
    pub fn checked_sub(self, other: Credits) -> Option<Credits> {
        self.0.checked_sub(other.0).filter(|v| *v >= 0).map(Credits)
    }

    pub fn saturating_add(self, other: Credits) -> Credits {
        Credits(self.0.saturating_add(other.0))
    }

    /// `self * n`, saturating.
    pub fn times(self, n: u32) -> Credits {
        Credits(self.0.saturating_mul(i64::from(n)))
    }
}

impl TryFrom<i64> for Credits {
    type Error = NegativeCredits;
    fn try_from(v: i64) -> Result<Self, Self::Error> {
        Credits::new(v)
    }
}

impl From<Credits> for i64 {
    fn from(c: Credits) -> i64 {
        c.0
    }
}

impl fmt::Display for Credits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Why a ledger entry exists. The ledger is append-only; a user's balance is the sum of entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerReason {
    /// Credits given to a new user (`START_CREDITS`), once per user.
    Welcome,
    /// Credits granted by an admin, with a note.
    Grant,
    /// Credits bought: one entry per payment charge, never two.
    Purchase,
    /// An order's charge (negative).
    Charge,
    /// A failed or cancelled job's credit returned; at most one per job.
    Refund,
    /// A bought pack taken back because its payment was refunded (negative); at most one per
    /// payment.
    PurchaseRefund,
    /// The bonus a referrer gets when a friend's first purchase succeeds; at most one per
    /// referred user.
    Referral,
}

impl LedgerReason {
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerReason::Welcome => "welcome",
            LedgerReason::Grant => "grant",
            LedgerReason::Purchase => "purchase",
            LedgerReason::Charge => "charge",
            LedgerReason::Refund => "refund",
            LedgerReason::PurchaseRefund => "purchase_refund",
            LedgerReason::Referral => "referral",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "welcome" => LedgerReason::Welcome,
            "grant" => LedgerReason::Grant,
            "purchase" => LedgerReason::Purchase,
            "charge" => LedgerReason::Charge,
            "refund" => LedgerReason::Refund,
            "purchase_refund" => LedgerReason::PurchaseRefund,
            "referral" => LedgerReason::Referral,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credits_reject_negative_and_subtract_checked() {
        assert_eq!(Credits::new(-1), Err(NegativeCredits(-1)));
        let five = Credits::new(5).expect("valid");
        let three = Credits::new(3).expect("valid");
        assert_eq!(five.checked_sub(three).map(Credits::get), Some(2));
        assert_eq!(three.checked_sub(five), None);
        assert_eq!(three.times(3).get(), 9);
    }
}
