//! Test kit: fakes of the external APIs (Telegram Bot API, KIE.AI, OpenAI) on wiremock, a
//! harness that starts the whole system in one test, and conformance suites for the ports.

pub mod fake_telegram;
