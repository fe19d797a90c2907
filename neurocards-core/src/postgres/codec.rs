//! Rows to domain types and back. A stored value that no longer parses is reported as an
//! unexpected error naming the column, never silently replaced.

use crate::domain::{
    AspectRatio, ClaimedJob, Delivery, ErrorClass, GenerationOptions, ImageMime, JobId,
    JobProgress, JobSpec, JobStatus, JobStep, Language, Lease, LeaseToken, OrderId, ProductId,
    Prompt, ProviderTaskRef, TemplateId, UserId,
};
use crate::ports::JobSnapshot;
use anyhow::anyhow;
use chrono::{DateTime, Utc};

pub(crate) fn aspect_str(a: AspectRatio) -> &'static str {
    match a {
        AspectRatio::Portrait => "portrait",
        AspectRatio::Landscape => "landscape",
        AspectRatio::Square => "square",
    }
}

pub(crate) fn parse_aspect(s: &str) -> anyhow::Result<AspectRatio> {
    match s {
        "portrait" => Ok(AspectRatio::Portrait),
        "landscape" => Ok(AspectRatio::Landscape),
        "square" => Ok(AspectRatio::Square),
        other => Err(anyhow!("orders.aspect holds an unknown value {other:?}")),
    }
}

pub(crate) fn mime_str(m: ImageMime) -> &'static str {
    match m {
        ImageMime::Jpeg => "jpeg",
        ImageMime::Png => "png",
        ImageMime::Webp => "webp",
    }
}

pub(crate) fn parse_mime(s: &str) -> anyhow::Result<ImageMime> {
    match s {
        "jpeg" => Ok(ImageMime::Jpeg),
        "png" => Ok(ImageMime::Png),
        "webp" => Ok(ImageMime::Webp),
        other => Err(anyhow!("products.photo_mime holds an unknown value {other:?}")),
    }
}

pub(crate) fn parse_language(s: &str) -> anyhow::Result<Language> {
    Language::parse(s).ok_or_else(|| anyhow!("language column holds an unknown value {s:?}"))
}

pub(crate) fn parse_status(s: &str) -> anyhow::Result<JobStatus> {
    JobStatus::parse(s).ok_or_else(|| anyhow!("jobs.state holds an unknown value {s:?}"))
}

pub(crate) fn parse_error_class(s: Option<&str>) -> anyhow::Result<Option<ErrorClass>> {
    s.map(|s| ErrorClass::parse(s).ok_or_else(|| anyhow!("jobs.error_class holds {s:?}")))
        .transpose()
}

pub(crate) fn parse_step(s: Option<&str>) -> anyhow::Result<Option<JobStep>> {
    s.map(|s| JobStep::parse(s).ok_or_else(|| anyhow!("jobs.current_step holds {s:?}"))).transpose()
}

fn count(v: i32, column: &str) -> anyhow::Result<u32> {
    u32::try_from(v).map_err(|_| anyhow!("{column} is negative ({v})"))
}

/// The columns every job read selects, from `jobs j` joined with its `orders o`.
macro_rules! job_columns {
    () => {
        "j.id, j.order_id, j.user_id, j.index_in_order, o.count AS order_size, j.state, j.run_at, \
         j.attempt, j.temporary_retries, j.rate_limit_retries, j.rescues, j.blamed_rescues, \
         j.current_step, j.lease_token, \
         j.leased_by, j.lease_expires_at, j.image_url, j.prompt, j.provider_task_id, \
         j.provider_model, j.provider_key_id, j.provider_submitted_at, j.video_url, \
         j.delivered_message_id, j.delivered_file_id, j.undeliverable_reason, j.error_class, \
         j.error_message, j.created_at, j.finished_at, o.product_id, o.template, o.wishes, \
         o.user_prompt, o.aspect, o.duration_secs, o.language, o.model"
    };
}
pub(crate) use job_columns;

/// A job joined with its order, as [`job_columns!`] selects it.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct JobRow {
    id: i64,
    order_id: i64,
    user_id: i64,
    index_in_order: i32,
    order_size: i32,
    state: String,
    run_at: DateTime<Utc>,
    attempt: i32,
    temporary_retries: i32,
    rate_limit_retries: i32,
    rescues: i32,
    blamed_rescues: i32,
    current_step: Option<String>,
    lease_token: i64,
    leased_by: Option<String>,
    lease_expires_at: Option<DateTime<Utc>>,
    image_url: Option<String>,
    prompt: Option<String>,
    provider_task_id: Option<String>,
    provider_model: Option<String>,
    provider_key_id: Option<String>,
    provider_submitted_at: Option<DateTime<Utc>>,
    video_url: Option<String>,
    delivered_message_id: Option<i32>,
    delivered_file_id: Option<String>,
    undeliverable_reason: Option<String>,
    error_class: Option<String>,
    error_message: Option<String>,
    created_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
    product_id: Option<i64>,
    template: String,
    wishes: Option<String>,
    user_prompt: Option<String>,
    aspect: String,
    duration_secs: i32,
    language: String,
    model: Option<String>,
}

impl JobRow {
    fn spec(&self) -> anyhow::Result<JobSpec> {
        Ok(JobSpec {
            product_id: self.product_id.map(ProductId),
            template: TemplateId::parse(self.template.clone())?,
            wishes: self.wishes.clone(),
            user_prompt: self.user_prompt.clone(),
            model: self.model.clone(),
            options: GenerationOptions {
                aspect: parse_aspect(&self.aspect)?,
                duration_secs: u32::try_from(self.duration_secs)
                    .map_err(|_| anyhow!("orders.duration_secs is negative"))?,
            },
            language: parse_language(&self.language)?,
        })
    }

    fn progress(&self) -> anyhow::Result<JobProgress> {
        let prompt = self
            .prompt
            .as_deref()
            .map(Prompt::parse)
            .transpose()
            .map_err(|e| anyhow!("jobs.prompt of job {}: {e}", self.id))?;
        let provider_task = self.provider_task_id.as_ref().map(|task_id| ProviderTaskRef {
            task_id: task_id.clone(),
            model: self.provider_model.clone().unwrap_or_default(),
            key_id: self.provider_key_id.clone().unwrap_or_default(),
            submitted_at: self.provider_submitted_at.unwrap_or(self.created_at),
        });
        let delivery = match (&self.delivered_message_id, &self.undeliverable_reason) {
            (Some(message_id), _) => Some(Delivery::Sent {
                message_id: *message_id,
                file_id: self.delivered_file_id.clone(),
            }),
            (None, Some(reason)) => Some(Delivery::Undeliverable { reason: reason.clone() }),
            (None, None) => None,
        };
        Ok(JobProgress {
            image_url: self.image_url.clone(),
            prompt,
            provider_task,
            video_url: self.video_url.clone(),
            delivery,
            entered_step: parse_step(self.current_step.as_deref())?,
        })
    }

    /// The job's id and lease token: plain columns that decode even when the rest of the row
    /// does not, so that an unreadable claimed job can still be failed under its lease.
    pub(crate) fn lease(&self) -> Lease {
        Lease { job_id: JobId(self.id), token: LeaseToken(self.lease_token) }
    }

    /// The job as the worker that just claimed it sees it.
    pub(crate) fn into_claimed(self) -> anyhow::Result<ClaimedJob> {
        let lease_expires_at = self
            .lease_expires_at
            .ok_or_else(|| anyhow!("claimed job {} has no lease expiry", self.id))?;
        Ok(ClaimedJob {
            lease: Lease { job_id: JobId(self.id), token: LeaseToken(self.lease_token) },
            order_id: OrderId(self.order_id),
            user_id: UserId(self.user_id),
            index_in_order: count(self.index_in_order, "jobs.index_in_order")?,
            order_size: count(self.order_size, "orders.count")?,
            spec: self.spec()?,
            progress: self.progress()?,
            attempt: count(self.attempt, "jobs.attempt")?,
            temporary_retries: count(self.temporary_retries, "jobs.temporary_retries")?,
            rate_limit_retries: count(self.rate_limit_retries, "jobs.rate_limit_retries")?,
            rescues: count(self.rescues, "jobs.rescues")?,
            created_at: self.created_at,
            lease_expires_at,
        })
    }

    /// The job as stored; `refunded` comes from the ledger.
    pub(crate) fn into_snapshot(self, refunded: bool) -> anyhow::Result<JobSnapshot> {
        Ok(JobSnapshot {
            id: JobId(self.id),
            order_id: OrderId(self.order_id),
            user_id: UserId(self.user_id),
            status: parse_status(&self.state)?,
            spec: self.spec()?,
            progress: self.progress()?,
            attempt: count(self.attempt, "jobs.attempt")?,
            rescues: count(self.rescues, "jobs.rescues")?,
            blamed_rescues: count(self.blamed_rescues, "jobs.blamed_rescues")?,
            temporary_retries: count(self.temporary_retries, "jobs.temporary_retries")?,
            rate_limit_retries: count(self.rate_limit_retries, "jobs.rate_limit_retries")?,
            run_at: self.run_at,
            leased_by: self.leased_by.clone(),
            error_class: parse_error_class(self.error_class.as_deref())?,
            error_message: self.error_message.clone(),
            refunded,
            created_at: self.created_at,
            finished_at: self.finished_at,
        })
    }
}
