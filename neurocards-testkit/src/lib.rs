//! Test support for Neurocards: conformance suites for the ports, the database invariants
//! check, PostgreSQL fixtures, and benchmarks.

pub mod conformance;
pub mod invariants;
pub mod pg;
