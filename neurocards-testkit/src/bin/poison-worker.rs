//! A worker process with a poison job in its diet: the real worker pipeline, wired from the
//! same settings as `neurocards-worker`, except that the process aborts (no unwinding, no
//! cleanup: like a segfault in a native library) the moment it submits a generation whose
//! prompt contains `POISON_MARKER`. Tests use it to check that such a job is found and failed
//! with refund while the other jobs of the workers it kills are delivered.
//!
//! Configuration: the `neurocards-worker` environment, plus `POISON_MARKER` (required). The
//! marker must reach the prompt: with no `OPENAI_API_KEY`, the template prompt carries the
//! order's wishes verbatim.

use anyhow::Context as _;
use neurocards_core::config::Settings;
use neurocards_core::domain::ProviderTaskRef;
use neurocards_core::pipeline::Pipeline;
use neurocards_core::ports::{
    CallbackError, CallbackHeaders, GenerationRequest, ProviderError, TaskState, VideoProvider,
};
use neurocards_core::wiring::{self, Adapters};
use neurocards_core::{domain::ImageData, shutdown, telemetry};
use std::sync::Arc;

/// The real provider, except that submitting a poisoned prompt aborts the process.
struct Poisoned {
    inner: Arc<dyn VideoProvider>,
    marker: String,
}

#[async_trait::async_trait]
impl VideoProvider for Poisoned {
    async fn upload_image(
        &self,
        image: &ImageData,
        file_stem: &str,
    ) -> Result<String, ProviderError> {
        self.inner.upload_image(image, file_stem).await
    }

    async fn submit(&self, request: &GenerationRequest) -> Result<ProviderTaskRef, ProviderError> {
        if request.prompt.as_str().contains(&self.marker) {
            eprintln!("poison-worker: poisoned prompt submitted; aborting");
            std::process::abort();
        }
        self.inner.submit(request).await
    }

    async fn check(&self, task: &ProviderTaskRef) -> Result<TaskState, ProviderError> {
        self.inner.check(task).await
    }

    fn callback_task_id(
        &self,
        headers: &CallbackHeaders,
        body: &[u8],
    ) -> Result<String, CallbackError> {
        self.inner.callback_task_id(headers, body)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    telemetry::init(settings.log_format);
    let marker = std::env::var("POISON_MARKER")
        .ok()
        .filter(|m| !m.trim().is_empty())
        .context("POISON_MARKER is not set")?;
    let store = wiring::OpenedStore::open(&settings).await?;
    let stores = store.stores(wiring::queue_config(&settings));
    let provider = wiring::kie_provider_from_env(&settings, stores.keys.clone())?;
    let adapters = Adapters::build(&settings, stores, provider)?;
    let mut deps = adapters.pipeline_deps();
    deps.provider = Arc::new(Poisoned { inner: deps.provider, marker });
    let pipeline = Pipeline::new(deps, wiring::pipeline_config(&settings));
    pipeline.run(shutdown::signal()).await;
    Ok(())
}
