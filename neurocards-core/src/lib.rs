//! Neurocards core: sell AI product videos over Telegram.
//!
//! The crate holds the domain ([`domain`]), the ports the services depend on ([`ports`]), the
//! services, and the adapters (PostgreSQL, the embedded SQLite store, KIE.AI, OpenAI, Telegram, YooKassa), each behind a cargo
//! feature (all on by default). A second bot embeds the same pieces with its own front end.

pub mod config;
pub mod domain;
pub mod i18n;
pub mod metrics;
pub mod payments;
pub mod pipeline;
pub mod ports;
pub mod prompts;
pub mod queue_config;
pub mod secret;
pub mod shutdown;
pub mod stores;
pub mod telemetry;
pub mod templates;
mod url_query;

#[cfg(feature = "openai")]
pub mod openai;

#[cfg(feature = "postgres")]
pub mod postgres;

#[cfg(feature = "sqlite")]
pub mod sqlite;

#[cfg(all(feature = "postgres", feature = "sqlite"))]
pub mod store_copy;

#[cfg(any(feature = "postgres", feature = "sqlite"))]
mod payment_rows;

#[cfg(feature = "kie")]
pub mod kie;

#[cfg(feature = "telegram")]
pub mod telegram;

#[cfg(feature = "yookassa")]
pub mod yookassa;

#[cfg(feature = "telegram")]
pub mod conversation;

#[cfg(feature = "telegram")]
pub mod marketplace;

#[cfg(feature = "web")]
pub mod web;

#[cfg(any(feature = "kie", feature = "openai", feature = "telegram", feature = "yookassa"))]
pub mod http;

#[cfg(any(feature = "kie", feature = "openai", feature = "telegram"))]
pub mod safe_fetch;

#[cfg(all(
    feature = "postgres",
    feature = "sqlite",
    feature = "kie",
    feature = "openai",
    feature = "telegram",
    feature = "web"
))]
pub mod wiring;
