//! Payments: the rails credits are bought on, purchase ids and pack ids.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Where the money moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rail {
    /// Telegram Stars (`XTR`): the rail Telegram requires for digital goods sold in the bot.
    Stars,
    /// YooKassa (RUB), a redirect to an outside checkout; optional.
    YooKassa,
}

impl Rail {
    pub const ALL: [Rail; 2] = [Rail::Stars, Rail::YooKassa];

    /// The stored and exported name: `stars` or `yookassa`.
    pub fn as_str(self) -> &'static str {
        match self {
            Rail::Stars => "stars",
            Rail::YooKassa => "yookassa",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "stars" => Some(Rail::Stars),
            "yookassa" => Some(Rail::YooKassa),
            _ => None,
        }
    }

    /// The currency this rail charges in: `XTR` (whole Stars) or `RUB` (amounts in kopecks).
    pub fn currency(self) -> &'static str {
        match self {
            Rail::Stars => "XTR",
            Rail::YooKassa => "RUB",
        }
    }
}

impl fmt::Display for Rail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Our id of one purchase attempt: the Stars invoice payload and YooKassa's `Idempotence-Key`
/// and `metadata.purchase_id`. One purchase can be paid more than once (an invoice can be paid
/// again); each payment is its own charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PurchaseId(pub uuid::Uuid);

impl PurchaseId {
    /// Stands for "no purchase of ours" (a payment whose payload we never issued): a charge
    /// recorded under it is always flagged as naming an unknown purchase, and kept for the
    /// operator.
    pub const UNKNOWN: PurchaseId = PurchaseId(uuid::Uuid::nil());

    pub fn new() -> Self {
        Self(uuid::Uuid::new_v4())
    }

    /// Parses the 32-hex-digit form [`fmt::Display`] writes (or a hyphenated UUID).
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() > 36 {
            return None;
        }
        uuid::Uuid::try_parse(s).ok().map(Self)
    }
}

impl Default for PurchaseId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for PurchaseId {
    /// 32 lowercase hex digits, no hyphens.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.simple())
    }
}

/// A pack's id in the catalogue: 1–24 characters of `a-z`, `0-9`, `_` and `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PackId(String);

/// A pack id that breaks the rules above.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("pack id must be 1-24 characters of a-z, 0-9, _ and - (got {0:?})")]
pub struct InvalidPackId(pub String);

impl PackId {
    pub fn parse(s: &str) -> Result<Self, InvalidPackId> {
        let ok = !s.is_empty()
            && s.len() <= 24
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidPackId(s.chars().take(40).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PackId {
    type Error = InvalidPackId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        PackId::parse(&s)
    }
}

impl From<PackId> for String {
    fn from(p: PackId) -> String {
        p.0
    }
}

impl fmt::Display for PackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purchase_id_round_trips_through_its_display_form() {
        let id = PurchaseId::new();
        let shown = id.to_string();
        assert_eq!(shown.len(), 32);
        assert_eq!(PurchaseId::parse(&shown), Some(id));
        assert_eq!(PurchaseId::parse("not-a-uuid"), None);
        assert_eq!(PurchaseId::parse(&"a".repeat(500)), None);
    }

    #[test]
    fn pack_ids_are_short_and_plain() {
        assert!(PackId::parse("pack10").is_ok());
        assert!(PackId::parse("").is_err());
        assert!(PackId::parse("Pack").is_err());
        assert!(PackId::parse("a:b").is_err());
        assert!(PackId::parse(&"a".repeat(25)).is_err());
    }

    #[test]
    fn rails_name_their_currency() {
        assert_eq!(Rail::Stars.currency(), "XTR");
        assert_eq!(Rail::YooKassa.currency(), "RUB");
        for rail in Rail::ALL {
            assert_eq!(Rail::parse(rail.as_str()), Some(rail));
        }
    }
}
