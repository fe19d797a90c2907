//! [`TestSystem`]: the whole generation side in one test — FakeKie, FakeOpenAi, FakeTelegram,
//! a real store (PostgreSQL, or the embedded SQLite store) and any number of workers — with helpers to fund users, store
//! products, place orders, wait for them, crash workers and check the invariants.
//!
//! Workers run either in-process ([`TestSystem::start_worker`]), each on its own Tokio runtime
//! and thread so that [`TestSystem::crash_worker`] drops everything the worker had (its job
//! tasks, heartbeats, connections) exactly as a killed process would; or as the real
//! `neurocards-worker` binary ([`TestSystem::spawn_worker_binary`]) configured through the same
//! environment variables an operator sets.
//!
//! Finding the binary: see [`crate::binaries::workspace_binary`] — the workspace's binaries are
//! built once per test process into the test's own target directory (or `NEUROCARDS_WORKER_BIN`
//! names one), so a plain `cargo test -p neurocards-testkit` works without a separate build step
//! and never runs a stale binary.

use crate::callback_receiver::CallbackReceiver;
use crate::fake_kie::FakeKie;
use crate::fake_openai::{FakeOpenAi, FAKE_OPENAI_KEY};
use crate::fake_telegram::{FakeTelegram, SentVideoView, TOKEN};
use crate::stores::StoreUnderTest;
use neurocards_core::config::Settings;
use neurocards_core::domain::{
    Credits, GenerationOptions, ImageMime, JobId, Language, LedgerReason, OrderKey, ProductId,
    TemplateId, UserId, VideoCount, WorkerId,
};
use neurocards_core::kie::KieProvider;
use neurocards_core::pipeline::{Pipeline, PipelineMetrics, RunReport, WaitPolicy};
use neurocards_core::ports::TaskSignals;
use neurocards_core::ports::{
    Accounts, JobQueue, JobSnapshot, NewOrder, NewProduct, NewUser, PhotoRef, PlacedOrder, Products,
};
use neurocards_core::wiring::{self, Adapters};
use sqlx::PgPool;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A tiny JPEG header: enough for the photo checks and the fakes.
pub const TEST_JPEG: &[u8] = &[0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0, 1];

static NEXT_USER: AtomicI64 = AtomicI64::new(500_000);

/// How the system under test is configured. The defaults are fast: retries after about
/// 50/100/200 ms, polls every 50 ms, a 3 s lease.
#[derive(Debug, Clone)]
pub struct SystemOptions {
    /// KIE keys (`KIE_API_KEYS`).
    pub kie_keys: Vec<String>,
    /// KIE models, primary first (`KIE_MODEL`, `KIE_FALLBACK_MODELS`).
    pub models: Vec<String>,
    pub temporary_delays: String,
    pub rate_limit_delays: String,
    pub lease: Duration,
    pub concurrency: u32,
    pub per_user_in_flight: u32,
    /// Receive KIE callbacks on a local route and let workers wait for them.
    pub callbacks: bool,
    /// Status check interval while waiting (in-process workers).
    pub poll: Duration,
    /// How long one claim waits for the provider.
    pub generation_deadline: Duration,
}

impl Default for SystemOptions {
    fn default() -> Self {
        Self {
            kie_keys: vec!["kie-test-key-1".to_owned()],
            models: vec!["sora-2-image-to-video".to_owned()],
            temporary_delays: "50ms,100ms,200ms".to_owned(),
            rate_limit_delays: "50ms,100ms,200ms".to_owned(),
            lease: Duration::from_secs(3),
            concurrency: 16,
            per_user_in_flight: 10,
            callbacks: false,
            poll: Duration::from_millis(50),
            generation_deadline: Duration::from_secs(30),
        }
    }
}

/// A worker running in this test process on its own runtime.
struct InProcessWorker {
    runtime: Option<tokio::runtime::Runtime>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<tokio::sync::oneshot::Receiver<RunReport>>,
    metrics: Arc<PipelineMetrics>,
}

impl Drop for InProcessWorker {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Which worker: an index returned by [`TestSystem::start_worker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerHandle(usize);

/// The system under test. See the module docs.
pub struct TestSystem {
    pub store: StoreUnderTest,
    pub kie: FakeKie,
    pub openai: FakeOpenAi,
    pub telegram: FakeTelegram,
    pub accounts: Arc<dyn Accounts>,
    pub products: Arc<dyn Products>,
    pub queue: Arc<dyn JobQueue>,
    /// The callback inbox, as the bot's `/kie/callback` writes it.
    pub signals: Arc<dyn TaskSignals>,
    /// A KIE adapter with the system's configuration, for parsing callbacks.
    pub provider: KieProvider,
    pub options: SystemOptions,
    callbacks: Option<CallbackReceiver>,
    workers: Vec<Option<InProcessWorker>>,
}

impl std::fmt::Debug for TestSystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestSystem").field("workers", &self.workers.len()).finish_non_exhaustive()
    }
}

/// The `postgres://` URL of the pool's database (a test's own database).
pub fn database_url(pool: &PgPool) -> String {
    let o = pool.connect_options();
    let db = o.get_database().unwrap_or("postgres");
    format!("postgres://{}@{}:{}/{}", o.get_username(), o.get_host(), o.get_port(), db)
}

impl TestSystem {
    /// Starts the fakes with the default options; no worker yet.
    pub async fn start(store: impl Into<StoreUnderTest>) -> Self {
        Self::start_with(store, SystemOptions::default()).await
    }

    /// Starts the fakes with `options`; no worker yet.
    pub async fn start_with(store: impl Into<StoreUnderTest>, options: SystemOptions) -> Self {
        let store = store.into();
        let kie = FakeKie::start().await;
        let openai = FakeOpenAi::start().await;
        let telegram = FakeTelegram::start().await;
        for m in &options.models {
            kie.allow_model(m);
        }
        let stores = store.stores(neurocards_core::queue_config::QueueConfig::default());
        let mut system = Self {
            accounts: stores.accounts,
            products: stores.products,
            queue: stores.queue,
            signals: stores.signals,
            provider: placeholder_provider(),
            store,
            kie,
            openai,
            telegram,
            options,
            callbacks: None,
            workers: Vec::new(),
        };
        let settings = system.settings();
        system.provider = system.kie_provider(&settings);
        system.queue = system.store.stores(wiring::queue_config(&settings)).queue;
        if system.options.callbacks {
            let receiver = CallbackReceiver::start(
                system.signals.clone(),
                Arc::new(system.kie_provider(&settings)),
                settings.kie_callback_secret.clone(),
            )
            .await;
            system.callbacks = Some(receiver);
        }
        system
    }

    /// The environment a worker of this system runs with.
    pub fn env(&self) -> HashMap<String, String> {
        let o = &self.options;
        let mut env: HashMap<String, String> = [
            ("DATABASE_MAX_CONNECTIONS", "8".to_owned()),
            ("BOT_TOKEN", TOKEN.to_owned()),
            ("TELEGRAM_API_URL", self.telegram.api_url().to_string()),
            ("KIE_BASE_URL", self.kie.base_url().to_string()),
            ("KIE_UPLOAD_URL", self.kie.upload_url().to_string()),
            ("KIE_API_KEYS", o.kie_keys.join(",")),
            ("KIE_MODEL", o.models.first().cloned().unwrap_or_default()),
            ("KIE_FALLBACK_MODELS", o.models.iter().skip(1).cloned().collect::<Vec<_>>().join(",")),
            ("OPENAI_API_KEY", FAKE_OPENAI_KEY.to_owned()),
            ("OPENAI_BASE_URL", self.openai.base_url().to_string()),
            ("WORKER_CONCURRENCY", o.concurrency.to_string()),
            ("WORKER_HTTP_ADDR", "127.0.0.1:0".to_owned()),
            ("JOB_LEASE", format!("{}ms", o.lease.as_millis())),
            ("PER_USER_IN_FLIGHT", o.per_user_in_flight.to_string()),
            ("GENERATION_DEADLINE", format!("{}ms", o.generation_deadline.as_millis())),
            ("RETRY_TEMPORARY_DELAYS", o.temporary_delays.clone()),
            ("RETRY_RATE_LIMIT_DELAYS", o.rate_limit_delays.clone()),
            ("RUST_LOG", "warn".to_owned()),
            // The fakes serve result videos on http://127.0.0.1.
            ("FETCH_ALLOW_LOCAL", "1".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        env.extend(self.store.process_env());
        if let Some(cb) = &self.callbacks {
            env.insert("PUBLIC_BASE_URL".to_owned(), cb.base_url());
        }
        env
    }

    /// The PostgreSQL pool under the system; panics on the embedded store (for tests of
    /// PostgreSQL facts).
    pub fn pool(&self) -> &PgPool {
        self.store.pg_pool()
    }

    /// The settings a worker of this system reads from [`TestSystem::env`].
    pub fn settings(&self) -> Settings {
        let env = self.env();
        Settings::from_lookup(&move |k| env.get(k).cloned()).expect("the test settings are valid")
    }

    fn kie_provider(&self, settings: &Settings) -> KieProvider {
        let keys = self.options.kie_keys.iter().map(neurocards_core::secret::Secret::new).collect();
        let mut config = wiring::kie_config(settings, keys);
        // A rate-limited key rests only briefly so that retries follow the short schedule.
        config.key_cooldown = Duration::from_millis(10);
        KieProvider::new(config).expect("the KIE adapter builds")
    }

    // ---- data ----

    /// Registers a user (a fresh id) with `credits` granted.
    pub async fn funded_user(&self, credits: i64) -> UserId {
        let id = UserId(NEXT_USER.fetch_add(1, Ordering::Relaxed));
        let user = NewUser {
            id,
            username: Some(format!("seller{id}")),
            first_name: Some("Seller".to_owned()),
            language: Language::En,
        };
        self.accounts.register(&user, Credits::ZERO).await.expect("register user");
        if credits > 0 {
            let amount = Credits::new(credits).expect("credits");
            self.accounts
                .credit(id, amount, LedgerReason::Grant, "test funds")
                .await
                .expect("fund");
        }
        id
    }

    /// Stores a product whose photo FakeTelegram holds.
    pub async fn product(&self, user: UserId) -> ProductId {
        let file_id = self.telegram.add_file(None, TEST_JPEG.to_vec());
        let product = NewProduct {
            user_id: user,
            photo: Some(PhotoRef { telegram_file_id: file_id, mime: ImageMime::Jpeg }),
            marketplace_url: None,
            description: "A ceramic mug with a blue glaze".to_owned(),
        };
        self.products.create(&product).await.expect("create product")
    }

    /// Places an order of `count` videos (any count up to the bulk limit) of the first built-in
    /// template at one credit each.
    pub async fn order(&self, user: UserId, product: ProductId, count: u32) -> PlacedOrder {
        let order = NewOrder {
            user_id: user,
            key: OrderKey::random(),
            count: VideoCount::bulk(count).expect("video count"),
            price_per_video: Credits::new(1).expect("price"),
            spec: neurocards_core::domain::JobSpec {
                product_id: Some(product),
                template: TemplateId::parse("ugc").expect("template id"),
                wishes: None,
                user_prompt: None,
                model: None,
                options: GenerationOptions::default(),
                language: Language::En,
            },
        };
        self.queue.place_order(&order).await.expect("place order")
    }

    /// A funded user with a product and an order of `count` videos.
    pub async fn user_with_order(&self, credits: i64, count: u32) -> (UserId, PlacedOrder) {
        let user = self.funded_user(credits).await;
        let product = self.product(user).await;
        (user, self.order(user, product, count).await)
    }

    pub async fn balance(&self, user: UserId) -> i64 {
        self.accounts.balance(user).await.expect("balance").get()
    }

    pub async fn job(&self, id: JobId) -> JobSnapshot {
        self.queue.job(id).await.expect("read job").expect("job exists")
    }

    /// Waits until every job of `order` is terminal; panics after `timeout`, listing them.
    pub async fn wait_order(&self, order: &PlacedOrder, timeout: Duration) -> Vec<JobSnapshot> {
        self.wait_jobs(&order.jobs, timeout).await
    }

    /// Waits until every job in `jobs` is terminal; panics after `timeout`.
    pub async fn wait_jobs(&self, jobs: &[JobId], timeout: Duration) -> Vec<JobSnapshot> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let mut snaps = Vec::with_capacity(jobs.len());
            for id in jobs {
                snaps.push(self.job(*id).await);
            }
            if snaps.iter().all(|j| j.status.is_terminal()) {
                return snaps;
            }
            if tokio::time::Instant::now() >= deadline {
                let states: Vec<String> =
                    snaps.iter().map(|j| format!("{}: {:?}", j.id, j.status)).collect();
                panic!("jobs not terminal after {timeout:?}: {}", states.join(", "));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Jobs of the whole store not yet terminal.
    pub async fn open_jobs(&self) -> i64 {
        self.store.jobs_in("queued").await + self.store.jobs_in("running").await
    }

    /// Waits until no job is open; panics after `timeout`.
    pub async fn wait_all_terminal(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let open = self.open_jobs().await;
            if open == 0 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{open} jobs still open after {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The videos a user received.
    pub fn videos_to(&self, user: UserId) -> Vec<SentVideoView> {
        self.telegram.videos_to(user.get())
    }

    /// Waits until `job` has a provider task recorded and returns its id.
    pub async fn wait_task_of(&self, job: JobId, timeout: Duration) -> String {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(task) = self.job(job).await.progress.provider_task {
                return task.task_id;
            }
            assert!(tokio::time::Instant::now() < deadline, "job {job} submitted no task");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Delivers FakeKie's current callback for `task_id` the way the bot's callback route does:
    /// the KIE adapter verifies it and names the task, and the job that owns the task is woken.
    /// Returns what the route would have stored.
    pub async fn deliver_callback(&self, task_id: &str) -> neurocards_core::ports::WakeupOutcome {
        use neurocards_core::ports::{CallbackHeaders, VideoProvider};
        let body = self.kie.callback_body(task_id).expect("the task exists");
        let bytes = serde_json::to_vec(&body).expect("serialize callback");
        let named = self
            .provider
            .callback_task_id(&CallbackHeaders::default(), &bytes)
            .expect("callback verifies");
        let job = self.store.job_of_task(&named).await;
        let job = neurocards_core::domain::JobId(job.unwrap_or(i64::MAX));
        self.signals
            .record_wakeup(job, &neurocards_core::ports::WakeupTask::new(named))
            .await
            .expect("record wake-up")
    }

    /// Checks the database invariants (panics listing violations).
    pub async fn assert_invariants(&self) {
        self.store.assert_invariants().await;
    }

    /// Every job's status, as counts.
    pub async fn status_counts(&self) -> HashMap<String, i64> {
        self.store.status_counts().await
    }

    // ---- workers ----

    /// Starts a worker in this process, on its own runtime (and, on PostgreSQL, its own pool;
    /// on the embedded store every worker shares the one store, as in the all-in-one bot).
    pub fn start_worker(&mut self) -> WorkerHandle {
        let settings = self.settings();
        let provider = self.kie_provider(&settings);
        let options = self.options.clone();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .thread_name("test-worker")
            .build()
            .expect("worker runtime");
        let metrics = Arc::new(PipelineMetrics::default());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<RunReport>();
        let store = self.store.clone();
        let run_metrics = metrics.clone();
        let index = self.workers.len();
        runtime.spawn(async move {
            let stores = match &store {
                StoreUnderTest::Postgres(pool) => {
                    let pool = sqlx::postgres::PgPoolOptions::new()
                        .max_connections(8)
                        .connect_with((*pool.connect_options()).clone())
                        .await
                        .expect("worker pool");
                    neurocards_core::postgres::stores(&pool, wiring::queue_config(&settings))
                }
                StoreUnderTest::Sqlite(_) => store.stores(wiring::queue_config(&settings)),
            };
            let adapters = Adapters::build(&settings, stores, provider).expect("adapters");
            let mut config = wiring::pipeline_config(&settings);
            config.worker_id = WorkerId::new(format!("test-worker-{index}"));
            config.poll_interval = Duration::from_millis(200);
            config.claim_min_gap = Duration::from_millis(5);
            config.announce_interval = Duration::from_millis(100);
            config.shutdown_grace = Duration::from_secs(2);
            config.wait = WaitPolicy {
                fast_interval: options.poll,
                fast_until: Duration::from_secs(3600),
                medium_interval: options.poll,
                medium_until: Duration::from_secs(3600),
                slow_interval: options.poll,
                callback_interval: options.poll * 20,
                deadline: options.generation_deadline,
                max_check_errors: 5,
            };
            let pipeline = Pipeline::with_metrics(adapters.pipeline_deps(), config, run_metrics);
            let report = pipeline
                .run(async {
                    let _ = stop_rx.await;
                })
                .await;
            let _ = done_tx.send(report);
        });
        self.workers.push(Some(InProcessWorker {
            runtime: Some(runtime),
            stop: Some(stop_tx),
            done: Some(done_rx),
            metrics,
        }));
        WorkerHandle(index)
    }

    /// The counters of an in-process worker.
    pub fn worker_metrics(&self, worker: WorkerHandle) -> Arc<PipelineMetrics> {
        self.workers[worker.0].as_ref().map(|w| w.metrics.clone()).expect("worker is running")
    }

    /// Kills an in-process worker at once: every task it had is dropped mid-step and its leases
    /// are left to expire, as with a killed process.
    pub fn crash_worker(&mut self, worker: WorkerHandle) {
        if let Some(mut w) = self.workers[worker.0].take() {
            if let Some(rt) = w.runtime.take() {
                rt.shutdown_background();
            }
        }
    }

    /// Stops an in-process worker gracefully and returns its report.
    pub async fn stop_worker(&mut self, worker: WorkerHandle) -> RunReport {
        let Some(mut w) = self.workers[worker.0].take() else { return RunReport::default() };
        if let Some(stop) = w.stop.take() {
            let _ = stop.send(());
        }
        let report = match w.done.take() {
            Some(done) => tokio::time::timeout(Duration::from_secs(10), done)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default(),
            None => RunReport::default(),
        };
        drop(w);
        report
    }

    /// Starts the real `neurocards-worker` binary against this system (see the module docs
    /// for how it is found). Kill it with [`tokio::process::Child::start_kill`].
    pub fn spawn_worker_binary(&self) -> tokio::process::Child {
        self.spawn_worker_binary_with(&[])
    }

    /// Like [`TestSystem::spawn_worker_binary`], with extra or overriding variables.
    pub fn spawn_worker_binary_with(&self, extra: &[(&str, &str)]) -> tokio::process::Child {
        let mut cmd = crate::binaries::service_command(&worker_binary(), self.env());
        cmd.envs(extra.iter().copied());
        cmd.spawn().expect("start neurocards-worker")
    }
}

impl Drop for TestSystem {
    fn drop(&mut self) {
        for w in self.workers.iter_mut() {
            w.take();
        }
    }
}

/// A KIE adapter used only until the real one is built from the settings.
fn placeholder_provider() -> KieProvider {
    let config = neurocards_core::kie::KieConfig::new(vec![neurocards_core::secret::Secret::new(
        "placeholder",
    )]);
    KieProvider::new(config).expect("the KIE adapter builds")
}

/// The `neurocards-worker` binary, freshly built (or `NEUROCARDS_WORKER_BIN`); see
/// [`crate::binaries::workspace_binary`].
pub fn worker_binary() -> PathBuf {
    crate::binaries::workspace_binary("neurocards-worker", "NEUROCARDS_WORKER_BIN")
}
