//! Ports: the traits the services depend on. Adapters implement them; tests use the `mockall`
//! mocks (`MockJobQueue`, …) or the testkit's fakes.

mod accounts;
mod job_queue;
mod key_budgets;
mod notifier;
mod payments;
mod pipeline_store;
mod prompt_engine;
mod video_provider;

pub use accounts::*;
pub use job_queue::*;
pub use key_budgets::*;
pub use notifier::*;
pub use payments::*;
pub use pipeline_store::*;
pub use prompt_engine::*;
pub use video_provider::*;
