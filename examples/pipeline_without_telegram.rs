//! Embedding the core without Telegram: a custom `VideoProvider`, a console `Notifier` and a
//! `PhotoSource` reading local files, driving the real PostgreSQL queue and generation pipeline.
//!
//! ```sh
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!     cargo run -p neurocards-core --example pipeline_without_telegram
//! ```
//!
//! It registers a user, grants 3 credits, places an order of 3 videos and runs one worker
//! until every job is delivered, printing what a user would have seen.

use anyhow::Context as _;
use async_trait::async_trait;
use neurocards_core::domain::{
    Credits, GenerationOptions, ImageData, ImageMime, JobSpec, Language, LedgerReason, OrderKey,
    ProviderTaskRef, TemplateId, UserId, VideoCount,
};
use neurocards_core::pipeline::{Pipeline, PipelineConfig, PipelineDeps};
use neurocards_core::ports::*;
use neurocards_core::postgres::{
    self, PgAccounts, PgJobQueue, PgOrderProgress, PgProducts, PgTaskSignals, QueueConfig,
};
use neurocards_core::prompts::TemplatePromptEngine;
use neurocards_core::templates::TemplateCatalogue;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A provider that "generates" in 300 ms. Replace the
/// bodies with calls to your own model server.
#[derive(Debug, Default)]
struct InstantProvider {
    tasks: AtomicU32,
    checks: AtomicU32,
}

#[async_trait]
impl VideoProvider for InstantProvider {
    async fn upload_image(
        &self,
        image: &ImageData,
        file_stem: &str,
    ) -> Result<String, ProviderError> {
        Ok(format!("https://files.example.com/{file_stem}.{}", image.mime.extension()))
    }

    async fn submit(&self, _request: &GenerationRequest) -> Result<ProviderTaskRef, ProviderError> {
        let n = self.tasks.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(ProviderTaskRef {
            task_id: format!("local-{n}"),
            model: "instant".into(),
            key_id: "local".into(),
            submitted_at: chrono::Utc::now(),
        })
    }

    async fn check(&self, task: &ProviderTaskRef) -> Result<TaskState, ProviderError> {
        self.checks.fetch_add(1, Ordering::SeqCst);
        if chrono::Utc::now() - task.submitted_at < chrono::TimeDelta::milliseconds(300) {
            return Ok(TaskState::Pending { progress: Some(50) });
        }
        Ok(TaskState::Succeeded {
            video_urls: vec![format!("https://files.example.com/{}.mp4", task.task_id)],
        })
    }

    fn callback_task_id(
        &self,
        _headers: &CallbackHeaders,
        _body: &[u8],
    ) -> Result<String, CallbackError> {
        Err(CallbackError::Malformed("this provider does not call back".into()))
    }
}

/// Prints what the user would see.
#[derive(Debug, Default)]
struct ConsoleNotifier {
    next_id: AtomicI32,
}

impl ConsoleNotifier {
    fn message(&self, to: Recipient) -> MessageRef {
        MessageRef {
            chat_id: to.user_id.get(),
            message_id: self.next_id.fetch_add(1, Ordering::SeqCst) + 1,
        }
    }
}

#[async_trait]
impl Notifier for ConsoleNotifier {
    async fn show_progress(
        &self,
        to: Recipient,
        existing: Option<MessageRef>,
        stage: &ProgressStage,
    ) -> Result<MessageRef, NotifyError> {
        println!("[user {}] progress: {stage:?}", to.user_id);
        Ok(existing.unwrap_or_else(|| self.message(to)))
    }

    async fn send_video(
        &self,
        to: Recipient,
        video: &VideoMessage,
    ) -> Result<SentVideo, NotifyError> {
        println!(
            "[user {}] video {} of {}: {}",
            to.user_id, video.index, video.total, video.video_url
        );
        Ok(SentVideo { message_id: self.message(to).message_id, file_id: None })
    }

    async fn offer_video(
        &self,
        to: Recipient,
        video: &VideoMessage,
    ) -> Result<MessageRef, NotifyError> {
        println!(
            "[user {}] video {} of {} may not have arrived; it is at {}",
            to.user_id, video.index, video.total, video.video_url
        );
        Ok(self.message(to))
    }

    async fn send_failure(
        &self,
        to: Recipient,
        notice: &FailureNotice,
    ) -> Result<MessageRef, NotifyError> {
        println!("[user {}] failed ({}), refunded {}", to.user_id, notice.class, notice.refunded);
        Ok(self.message(to))
    }

    async fn chat_action(&self, _to: Recipient) -> Result<(), NotifyError> {
        Ok(())
    }
}

/// Photos by "file id" from a built-in sample (a host would read its own storage).
#[derive(Debug)]
struct SamplePhotos;

#[async_trait]
impl PhotoSource for SamplePhotos {
    async fn fetch_photo(&self, _file_id: &str) -> Result<ImageData, PhotoError> {
        // The smallest valid PNG header is enough for this provider.
        Ok(ImageData {
            bytes: bytes::Bytes::from_static(b"\x89PNG\r\n\x1a\n"),
            mime: ImageMime::Png,
        })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL").context("DATABASE_URL is not set")?;
    let pool = postgres::connect(&url, 10).await?;
    postgres::migrate(&pool).await?;

    let accounts = Arc::new(PgAccounts::new(pool.clone()));
    let products = Arc::new(PgProducts::new(pool.clone()));
    let queue = Arc::new(PgJobQueue::new(pool.clone(), QueueConfig::default()));

    // A user with 3 credits and a product.
    let user = UserId(9_000_000_000 + i64::from(fastrand::u32(..)));
    let profile = NewUser {
        id: user,
        username: None,
        first_name: Some("Demo".into()),
        language: Language::En,
    };
    accounts.register(&profile, Credits::ZERO).await?;
    accounts.credit(user, Credits::new(3)?, LedgerReason::Grant, "example").await?;
    let product = products
        .create(&NewProduct {
            user_id: user,
            photo: Some(PhotoRef { telegram_file_id: "sample".into(), mime: ImageMime::Png }),
            marketplace_url: None,
            description: "A ceramic mug with a bamboo lid".into(),
        })
        .await?;

    let placed = queue
        .place_order(&NewOrder {
            user_id: user,
            key: OrderKey::random(),
            count: VideoCount::parse(3)?,
            price_per_video: Credits::new(1)?,
            spec: JobSpec {
                product_id: Some(product),
                template: TemplateId::parse("ad")?,
                wishes: Some("morning light, a wooden table".into()),
                user_prompt: None,
                model: None,
                options: GenerationOptions::default(),
                language: Language::En,
            },
        })
        .await?;
    println!(
        "order {} placed: {} jobs, balance now {}",
        placed.order_id,
        placed.jobs.len(),
        placed.balance_after
    );

    let deps = PipelineDeps {
        queue: queue.clone(),
        accounts: accounts.clone(),
        products,
        provider: Arc::new(InstantProvider::default()),
        prompts: Arc::new(TemplatePromptEngine::new(2_000)),
        notifier: Arc::new(ConsoleNotifier::default()),
        photos: Arc::new(SamplePhotos),
        progress: Arc::new(PgOrderProgress::new(pool.clone())),
        signals: Arc::new(PgTaskSignals::new(pool.clone())),
        templates: Arc::new(TemplateCatalogue::builtin()),
    };
    let mut config = PipelineConfig { concurrency: 8, ..PipelineConfig::default() };
    config.wait.fast_interval = Duration::from_millis(200);

    // Stop once every job of the order is terminal.
    let jobs = placed.jobs.clone();
    let watcher = queue.clone();
    let done = async move {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let mut finished = 0;
            for id in &jobs {
                if let Ok(Some(job)) = watcher.job(*id).await {
                    finished += usize::from(job.status.is_terminal());
                }
            }
            if finished == jobs.len() {
                break;
            }
        }
    };
    let report = Pipeline::new(deps, config).run(done).await;
    println!("worker stopped: {report:?}; balance {}", accounts.balance(user).await?);
    Ok(())
}
