//! The five steps of a job, one function each, in the order of the design's step table:
//!
//! | step | records | function |
//! |---|---|---|
//! | 1. photo uploaded | `image_url` | [`upload_photo`] |
//! | 2. prompt built | `prompt` | [`build_prompt`] |
//! | 3. submitted | `provider_task_id` (+ key, model), before waiting | [`submit_task`] |
//! | 4. generated | `video_url` | [`wait_for_video`] |
//! | 5. delivered | Telegram message id / file id | [`deliver_video`] |
//!
//! Each step begins with an intent record under the job's lease ([`JobQueue::begin_step`]) and
//! ends with its result recorded under the same lease; both writes survive database blips
//! (`writes.rs`). A resumed job skips what is recorded. The two calls that cost money or reach
//! the user (create a task, send the video) start only while this process's heartbeats are
//! healthy. A create call whose answer was lost leaves its intent behind: the next run adopts
//! the task the provider's callback names rather than paying for a second one; a send of the
//! video whose outcome is unknown is followed by an offer to send it, never by a second video.
//!
//! [`JobQueue::begin_step`]: crate::ports::JobQueue::begin_step

use super::outcome::{Failure, JobOutcome, StepError};
use super::wait::{self, stopped, WaitOutcome};
use super::writes::{retrying, side_effects_allowed};
use super::Inner;
use crate::domain::{
    ClaimedJob, Delivery, ErrorClass, ImageData, JobProgress, JobStep, ProviderTaskRef, StepResult,
};
use crate::ports::{
    GenerationRequest, NotifyError, Product, PromptRequest, Recipient, SentVideo, TaskState,
    VideoMessage,
};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// What one run of a job has at hand: the results recorded so far, and what an earlier step of
/// this run fetched that a later one can reuse.
#[derive(Debug)]
pub(super) struct RunState {
    pub done: JobProgress,
    product: Option<Product>,
    image: Option<ImageData>,
}

impl RunState {
    pub(super) fn new(done: JobProgress) -> Self {
        Self { done, product: None, image: None }
    }
}

fn stop_requested(stop: &watch::Receiver<bool>) -> Result<(), StepError> {
    if *stop.borrow() {
        Err(StepError::End(JobOutcome::Stopped))
    } else {
        Ok(())
    }
}

/// Records that the job enters `step` (its intent), fenced and retried.
async fn begin(inner: &Inner, job: &ClaimedJob, step: JobStep) -> Result<(), StepError> {
    let queue = &inner.deps.queue;
    retrying(inner, "begin_step", || queue.begin_step(job.lease, step)).await?;
    Ok(())
}

/// Records a step's result, fenced and retried.
async fn record(inner: &Inner, job: &ClaimedJob, result: &StepResult) -> Result<(), StepError> {
    let queue = &inner.deps.queue;
    retrying(inner, "record_step", || queue.record_step(job.lease, result)).await?;
    Ok(())
}

/// The job's product, fetched once per run when a step needs it.
async fn product(inner: &Inner, job: &ClaimedJob, st: &mut RunState) -> Result<Product, StepError> {
    if let Some(p) = st.product.clone() {
        return Ok(p);
    }
    let id = job
        .spec
        .product_id
        .ok_or_else(|| Failure::new(ErrorClass::Config, "the order has no product"))?;
    let p = match inner.deps.products.get(id, job.user_id).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            return Err(Failure::new(ErrorClass::Config, format!("product {id} not found")).into())
        }
        Err(e) => return Err(Failure::accounts(e).into()),
    };
    st.product = Some(p.clone());
    Ok(p)
}

async fn photo(inner: &Inner, product: &Product) -> Result<ImageData, StepError> {
    let photo = product
        .photo
        .as_ref()
        .ok_or_else(|| Failure::new(ErrorClass::Config, "the product has no photo"))?;
    Ok(inner.deps.photos.fetch_photo(&photo.telegram_file_id).await.map_err(Failure::photo)?)
}

/// Step 1: uploads the product photo where the provider can fetch it; records `image_url`.
pub(super) async fn upload_photo(
    inner: &Inner,
    job: &ClaimedJob,
    st: &mut RunState,
    stop: &watch::Receiver<bool>,
) -> Result<(), StepError> {
    stop_requested(stop)?;
    begin(inner, job, JobStep::Upload).await?;
    let t = Instant::now();
    let p = product(inner, job, st).await?;
    let img = photo(inner, &p).await?;
    let stem = format!("job-{}", job.lease.job_id);
    let url = inner.deps.provider.upload_image(&img, &stem).await.map_err(|e| {
        inner.metrics.provider_call("upload", e.class.as_str());
        Failure::provider(e)
    })?;
    inner.metrics.provider_call("upload", "ok");
    record(inner, job, &StepResult::ImageUploaded { image_url: url.clone() }).await?;
    inner.metrics.step("upload", t.elapsed());
    st.done.image_url = Some(url);
    st.image = Some(img);
    Ok(())
}

/// Step 2: builds the video prompt from the template, the photo and the wishes; records `prompt`.
pub(super) async fn build_prompt(
    inner: &Inner,
    job: &ClaimedJob,
    st: &mut RunState,
    stop: &watch::Receiver<bool>,
) -> Result<(), StepError> {
    stop_requested(stop)?;
    begin(inner, job, JobStep::Prompt).await?;
    let t = Instant::now();
    let p = product(inner, job, st).await?;
    if st.image.is_none() {
        // Resumed after the upload: the photo only improves the prompt, so a failed re-fetch
        // builds it from the text alone.
        st.image = photo(inner, &p).await.ok();
    }
    let template = inner.deps.templates.get(&job.spec.template).ok_or_else(|| {
        Failure::new(ErrorClass::Config, format!("unknown template {}", job.spec.template))
    })?;
    let request = PromptRequest {
        template,
        image: st.image.as_ref(),
        description: &p.description,
        wishes: job.spec.wishes.as_deref(),
        user_prompt: job.spec.user_prompt.as_deref(),
        language: job.spec.language,
        variant: job.index_in_order,
    };
    let prompt = inner.deps.prompts.build_prompt(&request).await.map_err(Failure::prompt)?;
    record(inner, job, &StepResult::PromptBuilt { prompt: prompt.clone() }).await?;
    inner.metrics.step("prompt", t.elapsed());
    st.done.prompt = Some(prompt);
    // The photo is not needed after the prompt; do not hold it through the long wait.
    st.image = None;
    Ok(())
}

/// Step 3: creates the paid provider task and records it before anything waits on it.
///
/// When an earlier run began a create call and never recorded its answer (it crashed, or the
/// answer was lost to a timeout or a gateway error), the task may exist: the callback URL of
/// that call carried the job, key and model, so the provider's callback names it. With
/// callbacks on, this run waits up to [`PipelineConfig::lost_task_wait`] for such a callback
/// and adopts the task once the provider confirms it; only then does it create a new one
/// (counted as `submit`/`resubmitted_after_lost_answer`).
///
/// [`PipelineConfig::lost_task_wait`]: super::PipelineConfig::lost_task_wait
pub(super) async fn submit_task(
    inner: &Inner,
    job: &ClaimedJob,
    st: &mut RunState,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), StepError> {
    stop_requested(stop)?;
    let (Some(image_url), Some(prompt)) = (st.done.image_url.clone(), st.done.prompt.clone())
    else {
        return Err(Failure::new(ErrorClass::Unknown, "steps recorded out of order").into());
    };
    if st.done.entered_step == Some(JobStep::Submit) {
        if let Some(task) = adopt_lost_task(inner, job, stop).await? {
            inner.metrics.provider_call("submit", "adopted");
            tracing::warn!(task_id = %task.task_id, "adopted the task of a create call whose answer was lost");
            record(inner, job, &StepResult::Submitted { task: task.clone() }).await?;
            st.done.provider_task = Some(task);
            return Ok(());
        }
        inner.metrics.provider_call("submit", "resubmitted_after_lost_answer");
        tracing::warn!("no task of the earlier create call was found; creating a new one");
    }
    side_effects_allowed(inner, stop).await?;
    begin(inner, job, JobStep::Submit).await?;
    let t = Instant::now();
    let request = GenerationRequest {
        image_url,
        prompt,
        options: job.spec.options,
        model: job.spec.model.clone(),
        callback_url: inner
            .config
            .callback_url
            .as_ref()
            .map(|base| super::job_callback_url(base, job.lease.job_id)),
    };
    let task = match inner.deps.provider.submit(&request).await {
        Ok(task) => task,
        Err(e) => {
            inner.metrics.provider_call("submit", e.class.as_str());
            let may_exist = e.task_may_exist;
            let mut f = Failure::provider(e);
            // A refused create made no task: the retry may create one at once. A lost answer
            // keeps its intent, so that the retry looks for the task first.
            f.abandon_task = !may_exist;
            return Err(f.into());
        }
    };
    inner.metrics.provider_call("submit", "ok");
    // Recorded before waiting: from here on, every claim of this attempt polls this task.
    record(inner, job, &StepResult::Submitted { task: task.clone() }).await?;
    inner.metrics.step("submit", t.elapsed());
    tracing::info!(task_id = %task.task_id, model = %task.model, key_id = %task.key_id, "task submitted");
    st.done.provider_task = Some(task);
    Ok(())
}

/// Looks for the task an earlier, unanswered create call of this job may have made: a task
/// named by a callback addressed to the job, with the key and model its URL carried, that the
/// provider confirms. Waits for one up to the configured time when callbacks are on.
async fn adopt_lost_task(
    inner: &Inner,
    job: &ClaimedJob,
    stop: &mut watch::Receiver<bool>,
) -> Result<Option<ProviderTaskRef>, StepError> {
    let callbacks = inner.config.callback_url.is_some() && inner.config.callbacks_confirmed;
    let give_up =
        Instant::now() + if callbacks { inner.config.lost_task_wait } else { Duration::ZERO };
    loop {
        for named in inner.deps.signals.wakeup_tasks(job.lease.job_id).await? {
            let (Some(key_id), Some(model)) = (named.key_id, named.model) else { continue };
            let candidate = ProviderTaskRef {
                task_id: named.task_id,
                model,
                key_id,
                submitted_at: chrono::Utc::now(),
            };
            // The provider's answer decides: a task unknown to our key is not adopted.
            match inner.deps.provider.check(&candidate).await {
                Ok(_) => return Ok(Some(candidate)),
                Err(e) => {
                    tracing::info!(task_id = %candidate.task_id, error = %e, "named task not confirmed");
                }
            }
        }
        if Instant::now() >= give_up {
            return Ok(None);
        }
        tokio::select! {
            () = stopped(stop) => return Err(StepError::End(JobOutcome::Stopped)),
            () = tokio::time::sleep(inner.config.wait.fast_interval) => {}
        }
    }
}

/// Step 4: waits for the provider to finish the task; records `video_url`. A failed task is given up
/// (the retry submits a new one); a task still pending at the deadline is kept for the retry.
pub(super) async fn wait_for_video(
    inner: &Inner,
    job: &ClaimedJob,
    st: &mut RunState,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), StepError> {
    let Some(task) = st.done.provider_task.clone() else {
        return Err(Failure::new(ErrorClass::Unknown, "no provider task to wait for").into());
    };
    begin(inner, job, JobStep::Wait).await?;
    let t = Instant::now();
    let state = match wait::wait_for_task(inner, job.lease.job_id, &task, stop).await {
        WaitOutcome::Finished(state) => state,
        WaitOutcome::Stopped => return Err(StepError::End(JobOutcome::Stopped)),
        WaitOutcome::CheckFailed(e) => return Err(Failure::provider(e).into()),
        WaitOutcome::Deadline => {
            let deadline = Failure::new(ErrorClass::Temporary, "generation deadline passed");
            if inner.config.retry.delay(ErrorClass::Temporary, job.temporary_retries).is_some() {
                // The task is kept: the retry polls it again, it may still finish.
                return Err(deadline.into());
            }
            // No retry left: one last look before refunding a task the provider may have
            // finished meanwhile.
            match inner.deps.provider.check(&task).await {
                Ok(state) if state.is_final() => state,
                _ => return Err(deadline.into()),
            }
        }
    };
    inner.metrics.step("wait", t.elapsed());
    let video_url = match state {
        TaskState::Succeeded { video_urls } => video_urls.into_iter().next().ok_or_else(|| {
            Failure::new(ErrorClass::Unknown, "the provider reported no video URL")
        })?,
        TaskState::Failed(e) => {
            let mut f = Failure::provider(e);
            f.abandon_task = true;
            return Err(f.into());
        }
        TaskState::Pending { .. } => {
            return Err(Failure::new(ErrorClass::Temporary, "task still pending").into());
        }
    };
    record(inner, job, &StepResult::Generated { video_url: video_url.clone() }).await?;
    st.done.video_url = Some(video_url);
    Ok(())
}

/// Step 5: sends the video with its buttons; records the Telegram message (or that the user
/// blocked the bot). The send starts only under healthy heartbeats, and its record is retried
/// through database blips.
///
/// A job whose earlier run entered this step without recording its result may already have
/// sent the video (its worker died in the call, or no answer came back): it sends an offer in
/// its place (a link and a "Send the video" button), never the video a second time. A send
/// Telegram refused outright withdraws the step's intent, so the retry sends the video itself.
pub(super) async fn deliver_video(
    inner: &Inner,
    job: &ClaimedJob,
    st: &mut RunState,
    stop: &mut watch::Receiver<bool>,
) -> Result<Delivery, StepError> {
    if let Some(d) = st.done.delivery.clone() {
        return Ok(d);
    }
    let Some(video_url) = st.done.video_url.clone() else {
        return Err(Failure::new(ErrorClass::Unknown, "no video to deliver").into());
    };
    let unconfirmed = st.done.entered_step == Some(JobStep::Deliver);
    side_effects_allowed(inner, stop).await?;
    begin(inner, job, JobStep::Deliver).await?;
    let t = Instant::now();
    let to = Recipient { user_id: job.user_id, language: job.spec.language };
    let video = VideoMessage {
        video_url,
        order_id: job.order_id,
        job_id: job.lease.job_id,
        product_id: job.spec.product_id,
        index: job.index_in_order,
        total: job.order_size,
    };
    let sent = if unconfirmed {
        tracing::warn!("an earlier send of this video may have arrived; offering it instead");
        inner.metrics.provider_call("deliver", "offered");
        inner
            .deps
            .notifier
            .offer_video(to, &video)
            .await
            .map(|m| SentVideo { message_id: m.message_id, file_id: None })
    } else {
        if let Err(e) = inner.deps.notifier.chat_action(to).await {
            tracing::debug!(error = %e, "chat action not shown");
        }
        inner.deps.notifier.send_video(to, &video).await
    };
    let delivery = match sent {
        Ok(sent) => Delivery::Sent { message_id: sent.message_id, file_id: sent.file_id },
        Err(NotifyError::BotBlocked) => {
            if let Err(e) = inner.deps.accounts.set_bot_blocked(job.user_id, true).await {
                tracing::warn!(error = %e, "could not record that the user blocked the bot");
            }
            Delivery::Undeliverable { reason: "the user blocked the bot".to_owned() }
        }
        Err(e) => {
            if !unconfirmed && !e.may_have_been_sent() {
                // Telegram answered that it sent nothing: the retry may send the video itself.
                let queue = &inner.deps.queue;
                retrying(inner, "withdraw_intent", || {
                    queue.withdraw_intent(job.lease, JobStep::Deliver)
                })
                .await?;
            }
            return Err(Failure::notify(e).into());
        }
    };
    record(inner, job, &StepResult::Delivered { delivery: delivery.clone() }).await?;
    inner.metrics.step("deliver", t.elapsed());
    st.done.delivery = Some(delivery.clone());
    Ok(delivery)
}
