//! Identifiers. Each is a distinct type so that a job id can never be passed where an order id
//! is expected.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! int_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl $name {
            /// The raw value, as stored in the database.
            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }

        impl From<i64> for $name {
            fn from(v: i64) -> Self {
                Self(v)
            }
        }
    };
}

int_id!(
    /// A Telegram user id; also the private chat id the bot talks to the user in.
    UserId
);
int_id!(
    /// An order: one tap on "Start", charging N credits for N jobs.
    OrderId
);
int_id!(
    /// One video to generate. An order of N videos has N jobs.
    JobId
);
int_id!(
    /// A stored product (photo + description) that orders point to and that
    /// "Make another with this product" reuses days later.
    ProductId
);

/// Fencing token of a claim. It changes on every claim of a job, and every write a worker makes
/// for the job must present it; a stale token is refused with a "lease lost" error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LeaseToken(pub i64);

impl fmt::Display for LeaseToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Identity of one worker process: hostname, pid and start time, fresh at every start, so that a
/// restarted process never mistakes its predecessor's leases for its own.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WorkerId(String);

impl WorkerId {
    /// The environment variable naming the machine in worker ids (`HOSTNAME`; `host` when
    /// unset, as under systemd, which does not export it).
    pub const HOSTNAME_VAR: &'static str = "HOSTNAME";

    /// A fresh identity for this process (`host:pid:start-millis:random`).
    pub fn generate() -> Self {
        let host = std::env::var(Self::HOSTNAME_VAR)
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "host".to_owned());
        let millis = chrono::Utc::now().timestamp_millis();
        Self(format!("{host}:{}:{millis}:{:04x}", std::process::id(), fastrand::u16(..)))
    }

    /// A worker id from a given name (tests, benchmarks).
    pub fn new(name: impl Into<String>) -> Self {
        Self(name.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Idempotency key of an order, chosen by the caller (the bot uses the dialogue's order draft id).
/// Placing an order with a key the user already used returns the first order and charges nothing.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrderKey(String);

/// An order key that is empty or longer than [`OrderKey::MAX_LEN`].
#[derive(Debug, thiserror::Error)]
#[error("order key must be 1..={max} visible ASCII characters", max = OrderKey::MAX_LEN)]
pub struct InvalidOrderKey;

impl OrderKey {
    pub const MAX_LEN: usize = 128;

    pub fn parse(key: impl Into<String>) -> Result<Self, InvalidOrderKey> {
        let key = key.into();
        if key.is_empty() || key.len() > Self::MAX_LEN || !key.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(InvalidOrderKey);
        }
        Ok(Self(key))
    }

    /// A new random key (UUID v4).
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OrderKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
