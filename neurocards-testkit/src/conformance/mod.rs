//! Conformance suites: plain async functions, generic over the implementation, one per
//! guarantee of a port. A backend is done when its test file runs every function here.

pub mod accounts;
pub mod bot_queries;
pub mod broadcasts;
pub mod dialogues;
pub mod job_queue;
pub mod key_budgets;
pub mod order_progress;
pub mod payments;
pub mod products;
pub mod task_signals;
pub mod update_claims;
pub mod usage_quota;
