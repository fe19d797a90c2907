//! Test kit: fakes of the external APIs (Telegram Bot API, KIE.AI, OpenAI, YooKassa) on wiremock, a
//! harness that starts the whole system in one test, conformance suites for the ports, the
//! database invariants check, PostgreSQL and embedded-store fixtures, and benchmarks.

pub mod binaries;
pub mod bot_harness;
pub mod callback_receiver;
pub mod conformance;
pub mod fake_kie;
pub mod fake_marketplace;
pub mod fake_openai;
pub mod fake_telegram;
pub mod fake_yookassa;
pub mod first_order;
pub mod invariants;
pub mod pg;
pub mod pg_bot_fixtures;
pub mod pg_pipeline_fixtures;
pub mod scratch_db;
pub mod sqlite_bot_fixtures;
pub mod sqlite_fixtures;
pub mod sqlite_pipeline_fixtures;
pub mod stores;
pub mod system;

/// A [`neurocards_core::safe_fetch::SafeFetch`] that may reach the fakes on `http://127.0.0.1`
/// (the test mode `FETCH_ALLOW_LOCAL=1` turns on); private and metadata addresses stay refused.
pub fn local_fetch() -> neurocards_core::safe_fetch::SafeFetch {
    use neurocards_core::safe_fetch::{FetchPolicy, SafeFetch};
    SafeFetch::new(FetchPolicy { allow_local: true, ..FetchPolicy::default() })
        .expect("the fetch client builds")
}
