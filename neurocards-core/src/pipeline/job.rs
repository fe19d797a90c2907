//! One job through its steps: upload photo → prompt → submit → wait → deliver → complete.
//!
//! Each step's result is recorded under the job's lease before the next step starts, and a
//! resumed job skips what is recorded: a recorded provider task is polled, never submitted
//! again. A refused write (lease lost) stops the job at once without touching anything else.
//!
//! Delivery is at most once as far as the provider and queue allow: the delivery is recorded
//! right after Telegram accepted the video. Only a crash (or lost lease) in the instant between
//! the send and that write can make a later claim send the video again.

use super::failure::{self, Failure};
use super::wait::{self, WaitOutcome};
use super::{progress, Inner};
use crate::domain::{
    ClaimedJob, Delivery, ErrorClass, ImageData, JobProgress, JobStep, StepResult,
};
use crate::ports::{
    AccountsError, GenerationRequest, NotifyError, PhotoError, Product, PromptError, PromptRequest,
    ProviderError, QueueError, Recipient, TaskState, VideoMessage,
};
use std::sync::Arc;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument;

/// How one run of a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JobOutcome {
    /// Delivered and completed.
    Succeeded,
    /// Generated, but the user blocked the bot: completed without refund.
    Undeliverable,
    /// Back in the queue with a durable delay.
    Retried(ErrorClass),
    /// Failed for good and refunded.
    Failed(ErrorClass),
    /// Shutdown asked; the job stopped at a recorded point and must be released.
    Stopped,
    /// Another worker owns the job now; nothing more was written.
    LeaseLost,
    /// The queue could not be written; the lease will expire and the job be rescued.
    StorageError(String),
}

impl JobOutcome {
    fn labels(&self) -> (&'static str, &'static str) {
        match self {
            JobOutcome::Succeeded => ("succeeded", "none"),
            JobOutcome::Undeliverable => ("undeliverable", "none"),
            JobOutcome::Retried(c) => ("retried", c.as_str()),
            JobOutcome::Failed(c) => ("failed", c.as_str()),
            JobOutcome::Stopped => ("released", "none"),
            JobOutcome::LeaseLost => ("lease_lost", "none"),
            JobOutcome::StorageError(_) => ("storage_error", "none"),
        }
    }
}

/// Why the steps stopped early.
enum StepError {
    /// A classified failure: retry or fail.
    Fail(Failure),
    /// The run ends as is.
    End(JobOutcome),
}

impl From<QueueError> for StepError {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::LeaseLost(_) => StepError::End(JobOutcome::LeaseLost),
            e => StepError::End(JobOutcome::StorageError(e.to_string())),
        }
    }
}

impl From<Failure> for StepError {
    fn from(f: Failure) -> Self {
        StepError::Fail(f)
    }
}

fn provider_failure(e: ProviderError) -> Failure {
    let detail = (e.class == ErrorClass::UserViolation).then(|| e.message.clone());
    Failure {
        class: e.class,
        message: e.message,
        retry_after: e.retry_after,
        abandon_task: false,
        detail,
    }
}

fn photo_failure(e: PhotoError) -> Failure {
    match e {
        PhotoError::Temporary(m) => Failure::new(ErrorClass::Temporary, m),
        e => {
            let mut f = Failure::new(ErrorClass::UserViolation, e.to_string());
            f.detail = Some(e.to_string());
            f
        }
    }
}

fn accounts_failure(e: AccountsError) -> Failure {
    let class = if e.is_retryable() { ErrorClass::Temporary } else { ErrorClass::Unknown };
    Failure::new(class, e.to_string())
}

fn prompt_failure(e: PromptError) -> Failure {
    match e {
        PromptError::Unavailable(m) => Failure::new(ErrorClass::Temporary, m),
        PromptError::Rejected(m) => {
            let mut f = Failure::new(ErrorClass::UserViolation, m.clone());
            f.detail = Some(m);
            f
        }
        PromptError::Config(m) => Failure::new(ErrorClass::Config, m),
    }
}

fn notify_failure(e: NotifyError) -> Failure {
    match e {
        NotifyError::RetryAfter(d) => {
            let mut f = Failure::new(ErrorClass::RateLimit, "Telegram asked to slow down");
            f.retry_after = Some(d);
            f
        }
        NotifyError::Temporary(m) => Failure::new(ErrorClass::Temporary, m),
        e => Failure::new(ErrorClass::Unknown, e.to_string()),
    }
}

/// Keeps the in-flight gauge right even when the job task is aborted.
struct InFlight<'a>(&'a super::PipelineMetrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.job_ended();
    }
}

/// Runs a claimed job until it completes, goes back to the queue, fails, or stops.
pub(crate) async fn run(
    inner: Arc<Inner>,
    job: ClaimedJob,
    mut stop: watch::Receiver<bool>,
) -> JobOutcome {
    let span = tracing::info_span!(
        "job",
        job_id = %job.lease.job_id,
        order_id = %job.order_id,
        user_id = %job.user_id,
        attempt = job.attempt,
    );
    async move {
        inner.metrics.job_started();
        let _in_flight = InFlight(&inner.metrics);
        let started = Instant::now();
        let outcome = match steps(&inner, &job, &mut stop).await {
            Ok(outcome) => outcome,
            Err(StepError::End(outcome)) => outcome,
            Err(StepError::Fail(f)) => failure::handle(&inner, &job, f).await,
        };
        let (label, class) = outcome.labels();
        inner.metrics.outcome(label, class);
        inner.metrics.step("job", started.elapsed());
        match &outcome {
            JobOutcome::LeaseLost => tracing::warn!("lease lost; job dropped"),
            JobOutcome::StorageError(e) => {
                tracing::error!(error = %e, "queue unavailable; job left to lease expiry");
            }
            o => tracing::info!(outcome = label, class, "job run ended: {o:?}"),
        }
        outcome
    }
    .instrument(span)
    .await
}

fn stop_requested(stop: &watch::Receiver<bool>) -> Result<(), StepError> {
    if *stop.borrow() {
        Err(StepError::End(JobOutcome::Stopped))
    } else {
        Ok(())
    }
}

/// The job's product, fetched once per run when a step needs it.
async fn product(inner: &Inner, job: &ClaimedJob) -> Result<Product, StepError> {
    let id = job
        .spec
        .product_id
        .ok_or_else(|| Failure::new(ErrorClass::Config, "the order has no product"))?;
    match inner.deps.products.get(id, job.user_id).await {
        Ok(Some(p)) => Ok(p),
        Ok(None) => Err(Failure::new(ErrorClass::Config, format!("product {id} not found")).into()),
        Err(e) => Err(accounts_failure(e).into()),
    }
}

async fn photo(inner: &Inner, product: &Product) -> Result<ImageData, StepError> {
    let photo = product
        .photo
        .as_ref()
        .ok_or_else(|| Failure::new(ErrorClass::Config, "the product has no photo"))?;
    Ok(inner.deps.photos.fetch_photo(&photo.telegram_file_id).await.map_err(photo_failure)?)
}

async fn steps(
    inner: &Inner,
    job: &ClaimedJob,
    stop: &mut watch::Receiver<bool>,
) -> Result<JobOutcome, StepError> {
    let deps = &inner.deps;
    let lease = job.lease;
    let mut done: JobProgress = job.progress.clone();
    if done.video_url.is_none() {
        progress::job_started(inner, job).await;
    }

    if done.video_url.is_none() && done.provider_task.is_none() {
        let mut product_cache: Option<Product> = None;
        let mut image: Option<ImageData> = None;

        if done.image_url.is_none() {
            stop_requested(stop)?;
            deps.queue.begin_step(lease, JobStep::Upload).await?;
            let t = Instant::now();
            let p = product(inner, job).await?;
            let img = photo(inner, &p).await?;
            let stem = format!("job-{}", lease.job_id);
            let url = deps.provider.upload_image(&img, &stem).await.map_err(|e| {
                inner.metrics.provider_call("upload", e.class.as_str());
                provider_failure(e)
            })?;
            inner.metrics.provider_call("upload", "ok");
            deps.queue
                .record_step(lease, &StepResult::ImageUploaded { image_url: url.clone() })
                .await?;
            inner.metrics.step("upload", t.elapsed());
            done.image_url = Some(url);
            product_cache = Some(p);
            image = Some(img);
        }

        if done.prompt.is_none() {
            stop_requested(stop)?;
            deps.queue.begin_step(lease, JobStep::Prompt).await?;
            let t = Instant::now();
            let p = match product_cache.take() {
                Some(p) => p,
                None => product(inner, job).await?,
            };
            if image.is_none() {
                // Resumed after the upload: the photo only improves the prompt, so a failed
                // re-fetch builds it from the text alone.
                image = photo(inner, &p).await.ok();
            }
            let template = deps.templates.get(&job.spec.template).ok_or_else(|| {
                Failure::new(ErrorClass::Config, format!("unknown template {}", job.spec.template))
            })?;
            let request = PromptRequest {
                template,
                image: image.as_ref(),
                description: &p.description,
                wishes: job.spec.wishes.as_deref(),
                user_prompt: job.spec.user_prompt.as_deref(),
                language: job.spec.language,
                variant: job.index_in_order,
            };
            let prompt = deps.prompts.build_prompt(&request).await.map_err(prompt_failure)?;
            deps.queue
                .record_step(lease, &StepResult::PromptBuilt { prompt: prompt.clone() })
                .await?;
            inner.metrics.step("prompt", t.elapsed());
            done.prompt = Some(prompt);
        }
        drop(image);

        stop_requested(stop)?;
        let (Some(image_url), Some(prompt)) = (done.image_url.clone(), done.prompt.clone()) else {
            return Err(Failure::new(ErrorClass::Unknown, "steps recorded out of order").into());
        };
        deps.queue.begin_step(lease, JobStep::Submit).await?;
        let t = Instant::now();
        let request = GenerationRequest {
            image_url,
            prompt,
            options: job.spec.options,
            callback_url: inner
                .config
                .callback_url
                .as_ref()
                .map(|base| super::job_callback_url(base, lease.job_id)),
        };
        let task = deps.provider.submit(&request).await.map_err(|e| {
            inner.metrics.provider_call("submit", e.class.as_str());
            provider_failure(e)
        })?;
        inner.metrics.provider_call("submit", "ok");
        // Recorded before waiting: from here on, every claim of this attempt polls this task.
        deps.queue.record_step(lease, &StepResult::Submitted { task: task.clone() }).await?;
        inner.metrics.step("submit", t.elapsed());
        tracing::info!(task_id = %task.task_id, model = %task.model, key_id = %task.key_id, "task submitted");
        done.provider_task = Some(task);
    }

    if done.video_url.is_none() {
        let Some(task) = done.provider_task.clone() else {
            return Err(Failure::new(ErrorClass::Unknown, "no provider task to wait for").into());
        };
        deps.queue.begin_step(lease, JobStep::Wait).await?;
        let t = Instant::now();
        let state = match wait::wait_for_task(inner, lease.job_id, &task, stop).await {
            WaitOutcome::Finished(state) => state,
            WaitOutcome::Stopped => return Err(StepError::End(JobOutcome::Stopped)),
            WaitOutcome::CheckFailed(e) => return Err(provider_failure(e).into()),
            WaitOutcome::Deadline => {
                let deadline = Failure::new(ErrorClass::Temporary, "generation deadline passed");
                if inner.config.retry.delay(ErrorClass::Temporary, job.temporary_retries).is_some()
                {
                    // The task is kept: the retry polls it again, it may still finish.
                    return Err(deadline.into());
                }
                // No retry left: one last look before refunding a task the provider may have
                // finished meanwhile.
                match deps.provider.check(&task).await {
                    Ok(state) if state.is_final() => state,
                    _ => return Err(deadline.into()),
                }
            }
        };
        inner.metrics.step("wait", t.elapsed());
        let video_url = match state {
            TaskState::Succeeded { video_urls } => {
                video_urls.into_iter().next().ok_or_else(|| {
                    Failure::new(ErrorClass::Unknown, "the provider reported no video URL")
                })?
            }
            TaskState::Failed(e) => {
                let mut f = provider_failure(e);
                f.abandon_task = true;
                return Err(f.into());
            }
            TaskState::Pending { .. } => {
                return Err(Failure::new(ErrorClass::Temporary, "task still pending").into());
            }
        };
        deps.queue
            .record_step(lease, &StepResult::Generated { video_url: video_url.clone() })
            .await?;
        done.video_url = Some(video_url);
    }

    let to = Recipient { user_id: job.user_id, language: job.spec.language };
    let delivery = match done.delivery.clone() {
        Some(d) => d,
        None => {
            let Some(video_url) = done.video_url.clone() else {
                return Err(Failure::new(ErrorClass::Unknown, "no video to deliver").into());
            };
            deps.queue.begin_step(lease, JobStep::Deliver).await?;
            let t = Instant::now();
            if let Err(e) = deps.notifier.chat_action(to).await {
                tracing::debug!(error = %e, "chat action not shown");
            }
            let video = VideoMessage {
                video_url,
                order_id: job.order_id,
                job_id: lease.job_id,
                product_id: job.spec.product_id,
                index: job.index_in_order,
                total: job.order_size,
            };
            let delivery = match deps.notifier.send_video(to, &video).await {
                Ok(sent) => Delivery::Sent { message_id: sent.message_id, file_id: sent.file_id },
                Err(NotifyError::BotBlocked) => {
                    if let Err(e) = deps.accounts.set_bot_blocked(job.user_id, true).await {
                        tracing::warn!(error = %e, "could not record that the user blocked the bot");
                    }
                    Delivery::Undeliverable { reason: "the user blocked the bot".to_owned() }
                }
                Err(e) => return Err(notify_failure(e).into()),
            };
            deps.queue
                .record_step(lease, &StepResult::Delivered { delivery: delivery.clone() })
                .await?;
            inner.metrics.step("deliver", t.elapsed());
            delivery
        }
    };

    let completed = deps.queue.complete(&[lease]).await?;
    if !completed.contains(&lease.job_id) {
        return Err(StepError::End(JobOutcome::LeaseLost));
    }
    inner.settle(lease.job_id);
    progress::job_finished(inner, job.order_id, job.user_id, job.spec.language).await;
    Ok(match delivery {
        Delivery::Sent { .. } => JobOutcome::Succeeded,
        Delivery::Undeliverable { .. } => JobOutcome::Undeliverable,
    })
}
