//! Conformance suites: plain async functions, generic over the implementation, one per
//! guarantee of a port. A backend is done when its test file runs every function here.

pub mod job_queue;
