//! The fleet-wide state of the video provider's API keys: per-key request budgets, cool-downs
//! and blocks, and the last balance read, shared by every process that uses the keys.
//!
//! KIE counts requests per key, not per process: three workers sharing two keys must draw from
//! one budget per key, or together they send three times the limit and collect 429s. A key that
//! one worker saw refused (429, 402, 401) is taken out of rotation for every worker, until its
//! time is up or an operator lifts it.

use crate::domain::ErrorClass;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// A request budget: at most `max` requests in any window of `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub max: u32,
    pub per: Duration,
}

impl RateLimit {
    /// KIE's documented budget for new tasks: 20 per 10 s.
    pub const KIE_CREATE: RateLimit = RateLimit { max: 20, per: Duration::from_secs(10) };
    /// KIE's documented budget for status checks: 10 per second per key.
    pub const KIE_STATUS: RateLimit = RateLimit { max: 10, per: Duration::from_secs(1) };
}

/// Which budget of a key a request draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PermitKind {
    /// Creating a task (`createTask`).
    Create,
    /// Reading a task's state (`recordInfo`).
    Status,
}

impl PermitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PermitKind::Create => "create",
            PermitKind::Status => "status",
        }
    }
}

/// Why a key takes no new work for a while.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOffKind {
    /// The key answered 429 on a create: it rests for a short cool-down.
    Cooling,
    /// The key answered 402 (no credits) or 401 (refused): it is blocked for a long time.
    Blocked,
}

impl KeyOffKind {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyOffKind::Cooling => "cooling",
            KeyOffKind::Blocked => "blocked",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "cooling" => Some(KeyOffKind::Cooling),
            "blocked" => Some(KeyOffKind::Blocked),
            _ => None,
        }
    }
}

/// A key out of rotation: since when, until when and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyOff {
    pub kind: KeyOffKind,
    pub until: DateTime<Utc>,
    /// The class of the answer that took the key out.
    pub class: ErrorClass,
}

impl KeyOff {
    /// The off state as a store keeps it (kind, until, class columns): `None` when the key is
    /// in rotation or the stored kind is not one we write; an unreadable class is `unknown`.
    pub fn from_stored(
        kind: Option<&str>,
        until: Option<DateTime<Utc>>,
        class: Option<&str>,
    ) -> Option<Self> {
        Some(Self {
            kind: KeyOffKind::parse(kind?)?,
            until: until?,
            class: class.and_then(ErrorClass::parse).unwrap_or(ErrorClass::Unknown),
        })
    }
}

/// The answer to a permit request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// The request may be sent now; it has been counted.
    Granted,
    /// The budget is used up: ask again after this long. Nothing was counted.
    Wait(Duration),
    /// The key is out of rotation (creates only; status checks of a cooling or blocked key are
    /// still allowed, since the task it created must be followed). Nothing was counted.
    Off(KeyOff),
}

impl Permit {
    /// A wait of `ms` milliseconds as a store computed it: at least 1 ms, a negative or zero
    /// figure (the clock moved on meanwhile) included, so a caller never spins.
    pub fn wait_ms(ms: i64) -> Self {
        Permit::Wait(Duration::from_millis(u64::try_from(ms).unwrap_or(1).max(1)))
    }
}

/// One key as the fleet knows it. Holds no secret: keys are named by their id.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    pub key_id: String,
    /// Set while the key takes no new tasks; `None` once the time is up or it was lifted.
    pub off: Option<KeyOff>,
    /// Set while status checks on the key wait after a 429 on a status check.
    pub checks_paused_until: Option<DateTime<Utc>>,
    /// Creates sent with the key, by every process, since the key was first seen.
    pub creates: u64,
    /// Status checks sent with the key, by every process, since the key was first seen.
    pub checks: u64,
    /// The class of the last failure the key's requests met, and when.
    pub last_error: Option<(ErrorClass, DateTime<Utc>)>,
    /// The last balance read from the provider, and when.
    pub credits: Option<(f64, DateTime<Utc>)>,
    /// Why the last balance read failed, when it did (cleared by a successful read).
    pub credits_error: Option<String>,
}

impl KeyRecord {
    /// A key never seen before.
    pub fn new(key_id: &str) -> Self {
        Self {
            key_id: key_id.to_owned(),
            off: None,
            checks_paused_until: None,
            creates: 0,
            checks: 0,
            last_error: None,
            credits: None,
            credits_error: None,
        }
    }

    /// `healthy`, `cooling` or `blocked`, as of `now`.
    pub fn state_at(&self, now: DateTime<Utc>) -> &'static str {
        match self.off {
            Some(off) if off.until > now => off.kind.as_str(),
            _ => "healthy",
        }
    }
}

/// The longest text kept about a failed balance read.
pub const MAX_KEY_NOTE_CHARS: usize = 300;

/// Errors of the key store.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    /// The database could not be reached or timed out: retrying later can help.
    #[error("key store unavailable: {0}")]
    Unavailable(String),
    /// Anything else; not retryable.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// The shared state of the provider's keys. Every method is one short statement (or one short
/// transaction) and safe to call from any number of processes at once.
#[async_trait::async_trait]
pub trait KeyBudgets: Send + Sync + std::fmt::Debug {
    /// Makes the keys known (so that health lists them before their first request). Idempotent.
    async fn register(&self, key_ids: &[String]) -> Result<(), KeyStoreError>;

    /// Takes one permit from a key's `kind` budget: granted (and counted) when fewer than
    /// `limit.max` permits of that kind were granted for the key, by any process, in the last
    /// `limit.per`; otherwise how long until one frees up. Creates on a key out of rotation
    /// answer [`Permit::Off`]; status checks wait while the key's checks are paused.
    async fn take(
        &self,
        key_id: &str,
        kind: PermitKind,
        limit: RateLimit,
    ) -> Result<Permit, KeyStoreError>;

    /// Takes a key out of rotation. A later `off` replaces an earlier one only when it ends
    /// later, so a cool-down never shortens a block.
    async fn set_off(&self, key_id: &str, off: KeyOff) -> Result<(), KeyStoreError>;

    /// Pauses status checks on a key until `until` (a 429 on a status check); creates go on.
    async fn pause_checks(&self, key_id: &str, until: DateTime<Utc>) -> Result<(), KeyStoreError>;

    /// Records the class of a failure the key's request met.
    async fn note_error(&self, key_id: &str, class: ErrorClass) -> Result<(), KeyStoreError>;

    /// Puts a key (or, with `None`, every key) back into rotation and lifts paused checks.
    /// Returns how many keys were out.
    async fn lift(&self, key_id: Option<&str>) -> Result<u64, KeyStoreError>;

    /// Claims the right to read a key's balance now: true for one caller per `every`, fleet-wide,
    /// so that many workers do not all ask the provider.
    async fn claim_balance_read(
        &self,
        key_id: &str,
        every: Duration,
    ) -> Result<bool, KeyStoreError>;

    /// Records a balance read: the credits, or why they could not be read (the last good
    /// figure is kept, never replaced by a false zero).
    async fn record_balance(
        &self,
        key_id: &str,
        credits: Result<f64, String>,
    ) -> Result<(), KeyStoreError>;

    /// Every known key, ordered by id.
    async fn keys(&self) -> Result<Vec<KeyRecord>, KeyStoreError>;
}

/// A balance read as every store keeps it: a finite figure, or why there is none (cut to
/// [`MAX_KEY_NOTE_CHARS`]); a figure that is not a number is a failed read, never a balance.
pub fn balance_to_store(credits: Result<f64, String>) -> Result<f64, String> {
    match credits {
        Ok(c) if c.is_finite() => Ok(c),
        Ok(_) => Err("the provider answered a balance that is not a number".to_owned()),
        Err(why) => Err(clip_key_note(&why)),
    }
}

/// Cuts a note to [`MAX_KEY_NOTE_CHARS`] at a character boundary.
pub fn clip_key_note(note: &str) -> String {
    note.chars().take(MAX_KEY_NOTE_CHARS).collect()
}
