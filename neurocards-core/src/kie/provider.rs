//! [`KieProvider`]: the [`VideoProvider`] on KIE, with key switching and model fallback.

use super::callback;
use super::classify::is_model_unsupported;
use super::client::{CallError, JobsApi};
use super::keys::{KeyPool, PoolKey, PoolSettings};
use super::models::VideoModel;
use super::upload::{upload_file_name, UploadApi};
use super::{KieConfig, KieError};
use crate::domain::{ErrorClass, ImageData, ImageMime, ProviderTaskRef};
use crate::ports::{
    CallbackError, CallbackHeaders, GenerationRequest, KeyBudgets, KeyRecord, PermitKind,
    ProviderError, TaskState, VideoProvider,
};
use crate::secret::Secret;
use chrono::Utc;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// The KIE video provider. Share one per process (it holds the key pool and its budgets).
#[derive(Debug)]
pub struct KieProvider {
    jobs: JobsApi,
    upload: UploadApi,
    models: Vec<VideoModel>,
    pool: KeyPool,
    callback_hmac_key: Option<Secret>,
    callback_max_age: Duration,
    remove_watermark: bool,
    paused_model_ttl: Duration,
    /// Models that answered "paused", and until when they are skipped.
    paused: Mutex<HashMap<String, Instant>>,
}

/// One key's account balance, or why it could not be read (never a false zero).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyCredits {
    pub key_id: String,
    pub credits: Result<f64, ProviderError>,
}

impl KieProvider {
    /// Builds the provider with its keys' budgets and states in this process only
    /// ([`MemoryKeyBudgets`](super::MemoryKeyBudgets)): right for one process; a fleet passes
    /// the store's shared state to [`KieProvider::with_budgets`]. Fails when there is no key,
    /// no model, or a model we have no input mapping for.
    pub fn new(config: KieConfig) -> Result<Self, KieError> {
        Self::with_budgets(config, Arc::new(super::MemoryKeyBudgets::new()))
    }

    /// Builds the provider drawing every request from `budgets`, the keys' state shared by
    /// every process using them (the store's [`KeyBudgets`]): KIE's per-key limits then hold
    /// for the whole fleet, and a key refused for one process is out of rotation for all.
    pub fn with_budgets(config: KieConfig, budgets: Arc<dyn KeyBudgets>) -> Result<Self, KieError> {
        if config.keys.is_empty() {
            return Err(KieError::NoKeys);
        }
        if config.models.is_empty() {
            return Err(KieError::NoModels);
        }
        let models =
            config.models.iter().map(|m| VideoModel::parse(m)).collect::<Result<Vec<_>, _>>()?;
        let http = crate::http::client(config.timeouts).map_err(KieError::HttpClient)?;
        let pool = KeyPool::new(
            &config.keys,
            PoolSettings {
                cooldown: config.key_cooldown,
                block: config.key_block,
                create_limit: config.create_limit,
                status_limit: config.status_limit,
            },
            budgets,
        );
        Ok(Self {
            jobs: JobsApi { http: http.clone(), base: config.base_url },
            upload: UploadApi { http, base: config.upload_url, upload_path: config.upload_path },
            models,
            pool,
            callback_hmac_key: config.callback_hmac_key,
            callback_max_age: config.callback_max_age,
            remove_watermark: config.remove_watermark,
            paused_model_ttl: config.paused_model_ttl,
            paused: Mutex::new(HashMap::new()),
        })
    }

    /// Each configured key as the fleet knows it: in rotation, cooling or blocked (until
    /// when, and why), paused status checks, request counts, the last balance read.
    pub async fn key_health(&self) -> Result<Vec<KeyRecord>, ProviderError> {
        self.pool.health().await
    }

    /// Puts every key back into rotation for the whole fleet, e.g. after the operator topped
    /// up the account. Returns how many keys were out.
    pub async fn reset_keys(&self) -> Result<u64, ProviderError> {
        self.pool.reset().await
    }

    /// Reads the balance of every key whose turn it is (one reader per key per `every`,
    /// fleet-wide) and records it in the shared state; a failed read is recorded as such and
    /// never as a zero balance.
    pub async fn refresh_balances(&self, every: Duration) {
        let budgets = self.pool.budgets();
        let secrets = self.pool.secrets();
        for key in self.pool.all_keys() {
            match budgets.claim_balance_read(&key.id, every).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "KIE key state unavailable; balances not read");
                    return;
                }
            }
            let credits = self
                .jobs
                .credits(&key, &secrets)
                .await
                .map_err(|e| CallError::into_error(e).message);
            if let Err(why) = &credits {
                tracing::warn!(key_id = %key.id, reason = %why, "KIE balance could not be read");
            }
            if let Err(e) = budgets.record_balance(&key.id, credits).await {
                tracing::warn!(key_id = %key.id, error = %e, "KIE balance not recorded");
            }
        }
    }

    /// The configured model slugs, primary first.
    pub fn models(&self) -> Vec<String> {
        self.models.iter().map(|m| m.slug().to_owned()).collect()
    }

    /// Each key's remaining KIE credits (`GET /api/v1/chat/credit`).
    pub async fn credits(&self) -> Vec<KeyCredits> {
        let secrets = self.pool.secrets();
        let mut out = Vec::new();
        for key in self.pool.all_keys() {
            let credits = self.jobs.credits(&key, &secrets).await.map_err(CallError::into_error);
            out.push(KeyCredits { key_id: key.id.clone(), credits });
        }
        out
    }

    /// Models to try: the `preferred` one first when it is configured, then the others in
    /// their configured order; recently paused ones are skipped while another remains.
    fn models_to_try(&self, preferred: Option<&str>) -> Vec<&VideoModel> {
        let now = Instant::now();
        let mut paused = self.paused.lock().unwrap_or_else(|p| p.into_inner());
        paused.retain(|_, until| *until > now);
        let mut ordered: Vec<&VideoModel> = self.models.iter().collect();
        if let Some(at) = preferred.and_then(|p| ordered.iter().position(|m| m.slug() == p)) {
            let chosen = ordered.remove(at);
            ordered.insert(0, chosen);
        }
        let live: Vec<&VideoModel> =
            ordered.iter().copied().filter(|m| !paused.contains_key(m.slug())).collect();
        if live.is_empty() {
            ordered
        } else {
            live
        }
    }

    fn remember_paused(&self, model: &VideoModel) {
        let until = Instant::now() + self.paused_model_ttl;
        self.paused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(model.slug().to_owned(), until);
    }

    /// Creates the task with one model, switching keys while the failure is the key's.
    async fn submit_with_model(
        &self,
        model: &VideoModel,
        request: &GenerationRequest,
    ) -> Result<ProviderTaskRef, ProviderError> {
        let secrets = self.pool.secrets();
        let input = model.input(
            request.prompt.as_str(),
            &request.image_url,
            &request.options,
            self.remove_watermark,
        );
        let mut tried: Vec<usize> = Vec::new();
        loop {
            let key = self.pool.acquire_create(&tried).await?;
            // The key and model ride along in the callback URL, so that a task whose create
            // answer is lost can still be checked (and adopted) when its callback arrives.
            let callback_url = request.callback_url.as_ref().map(|url| {
                crate::url_query::append_query(
                    url.expose(),
                    &[("key", &key.id), ("model", model.slug())],
                )
            });
            let result = self
                .jobs
                .create_task(&key, model.slug(), input.clone(), callback_url.as_deref(), &secrets)
                .await;
            match result {
                Ok(task_id) => {
                    tracing::info!(task_id, model = model.slug(), key_id = %key.id, "KIE task created");
                    return Ok(ProviderTaskRef {
                        task_id,
                        model: model.slug().to_owned(),
                        key_id: key.id.clone(),
                        submitted_at: Utc::now(),
                    });
                }
                // A gateway between us and KIE failed: KIE itself may have created the task.
                Err(CallError::Rejected(e)) if is_gateway_error(&e) => {
                    return Err(ProviderError { task_may_exist: true, ..e });
                }
                // KIE refused before billing: another key may take it.
                Err(CallError::Rejected(e)) => {
                    if self.pool.report_failure(&key, PermitKind::Create, &e).await {
                        tracing::warn!(key_id = %key.id, class = %e.class, "KIE key refused the task; trying another key");
                        tried.push(key.index);
                    } else {
                        warn_if_refused_machine(&e);
                        return Err(e);
                    }
                }
                // The task may exist: never send it again within this attempt, and tell the
                // caller so that the next attempt adopts it instead of paying twice.
                Err(CallError::Unclear { error, answered }) => {
                    let class = if answered { ErrorClass::Unknown } else { error.class };
                    return Err(ProviderError { class, task_may_exist: true, ..error });
                }
            }
        }
    }
}

/// A bare HTTP 403 is a proxy or an address allow-list in front of KIE refusing this machine;
/// the operator has to act, so it is said plainly (the job waits and tries again).
fn warn_if_refused_machine(e: &ProviderError) {
    if e.code.as_deref() == Some("403") && e.class == ErrorClass::Temporary {
        tracing::warn!(
            reason = %e.message,
            "KIE's gateway refused this machine (HTTP 403): check the server's address in KIE's \
             allow-list and any proxy in between"
        );
    }
}

/// An HTTP 502 or 504: a proxy or load balancer answered, not KIE.
fn is_gateway_error(e: &ProviderError) -> bool {
    matches!(e.code.as_deref(), Some("502" | "504"))
}

#[async_trait::async_trait]
impl VideoProvider for KieProvider {
    #[tracing::instrument(skip_all, fields(bytes = image.bytes.len()))]
    async fn upload_image(
        &self,
        image: &ImageData,
        file_stem: &str,
    ) -> Result<String, ProviderError> {
        if image.bytes.len() > ImageMime::MAX_BYTES {
            return Err(ProviderError::new(
                ErrorClass::UserViolation,
                "the photo is larger than 10 MB",
            ));
        }
        let secrets = self.pool.secrets();
        let file_name = upload_file_name(file_stem, image);
        let mut tried: Vec<usize> = Vec::new();
        loop {
            let key = self.pool.any_key(&tried).await?;
            match self.upload.upload(&key, image, &file_name, &secrets).await {
                Ok(url) => return Ok(url),
                Err(CallError::Rejected(e))
                    if self.pool.report_failure(&key, PermitKind::Create, &e).await =>
                {
                    tried.push(key.index);
                }
                // Uploading twice is free and harmless, so an unclear answer is just temporary.
                Err(e) => return Err(e.into_error()),
            }
        }
    }

    #[tracing::instrument(skip_all, fields(model))]
    async fn submit(&self, request: &GenerationRequest) -> Result<ProviderTaskRef, ProviderError> {
        let mut last: Option<ProviderError> = None;
        for model in self.models_to_try(request.model.as_deref()) {
            tracing::Span::current().record("model", model.slug());
            match self.submit_with_model(model, request).await {
                Ok(task) => return Ok(task),
                Err(e)
                    if e.class == ErrorClass::ProviderPaused
                        || (e.class == ErrorClass::Config && is_model_unsupported(&e.message)) =>
                {
                    tracing::warn!(model = model.slug(), reason = %e.message, "KIE model unavailable; trying the next model");
                    self.remember_paused(model);
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            ProviderError::new(ErrorClass::ProviderPaused, "no KIE model is available")
        }))
    }

    #[tracing::instrument(skip_all, fields(task_id = %task.task_id, key_id = %task.key_id))]
    async fn check(&self, task: &ProviderTaskRef) -> Result<TaskState, ProviderError> {
        let secrets = self.pool.secrets();
        let key: PoolKey = self.pool.acquire_status(&task.key_id).await?;
        match self.jobs.record_info(&key, &task.task_id, &secrets).await {
            Ok(record) => Ok(super::client::record_to_state(&record)),
            Err(CallError::Rejected(e)) => {
                self.pool.report_failure(&key, PermitKind::Status, &e).await;
                warn_if_refused_machine(&e);
                Err(e)
            }
            // Asking again is harmless, so an unreadable status is temporary.
            Err(CallError::Unclear { error, .. }) => {
                Err(ProviderError { class: ErrorClass::Temporary, ..error })
            }
        }
    }

    fn callback_task_id(
        &self,
        headers: &CallbackHeaders,
        body: &[u8],
    ) -> Result<String, CallbackError> {
        callback::verify_callback(
            self.callback_hmac_key.as_ref(),
            self.callback_max_age,
            Utc::now().timestamp(),
            headers,
            body,
        )
    }
}
