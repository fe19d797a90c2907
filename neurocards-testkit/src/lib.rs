//! Test kit: HTTP fakes of the external services (wiremock), for contract and end-to-end tests.

pub mod fake_kie;
