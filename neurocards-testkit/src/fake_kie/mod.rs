//! `FakeKie`: KIE.AI's jobs API, file upload host and result file server on wiremock
//! (api-facts §1.12), scriptable per scenario and recording what it received.
//!
//! Tasks are keyed by id, so any number of concurrent tasks can run. A task's plan is taken
//! from the current [`Scenario`] when it is created; its state advances per status check or
//! with time.

use neurocards_core::kie::sign;
use neurocards_core::secret::Secret;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use url::Url;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

mod chaos;
mod requests;
mod task;
use chaos::CreateFault;
pub use chaos::{Chaos, ChaosCounts};
use requests::{mime_for, parse_multipart, validate};
use task::FakeTask;

/// Bytes of the MP4 every result URL serves.
pub const VIDEO_BYTES: &[u8] =
    b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom\x00\x00\x00\x08free";

/// Which KIE endpoint a script applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Create,
    Status,
    Upload,
    Credit,
}

/// How new tasks behave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scenario {
    /// `n` status checks answer pending, the next one success.
    SucceedAfter(u32),
    /// Success once this much time has passed since creation (for callback flows).
    SucceedAfterTime(Duration),
    /// `checks` status checks answer pending, then the task fails with this failCode/failMsg.
    FailAfter { checks: u32, fail_code: String, fail_msg: String },
    /// Fails once this much time has passed since creation.
    FailAfterTime { after: Duration, fail_code: String, fail_msg: String },
    /// Never finishes.
    Never,
}

/// An error answer: HTTP status and envelope `{code, msg}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub http_status: u16,
    pub code: i64,
    pub msg: String,
}

impl Failure {
    pub fn new(http_status: u16, code: i64, msg: impl Into<String>) -> Self {
        Self { http_status, code, msg: msg.into() }
    }
    /// A refused key: KIE answers it inside HTTP 200.
    pub fn auth() -> Self {
        Self::new(200, 401, "You do not have access permissions")
    }
    pub fn billing() -> Self {
        Self::new(200, 402, "Credits insufficient")
    }
    pub fn rate_limited() -> Self {
        Self::new(429, 429, "Rate limit exceeded")
    }
    pub fn paused() -> Self {
        Self::new(200, 500, "This interface is temporarily paused")
    }
    pub fn disabled() -> Self {
        Self::new(200, 505, "success")
    }
    pub fn maintenance() -> Self {
        Self::new(200, 455, "Service unavailable")
    }
    pub fn server_error() -> Self {
        Self::new(500, 500, "Server error")
    }
    pub fn validation(msg: impl Into<String>) -> Self {
        Self::new(200, 422, msg)
    }
    fn response(&self) -> ResponseTemplate {
        ResponseTemplate::new(self.http_status)
            .set_body_json(json!({"code": self.code, "msg": self.msg, "data": null}))
    }
}

/// Automatic callbacks for tasks created with a `callBackUrl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CallbackMode {
    /// No callbacks (the default): tests send them with [`FakeKie::send_callback`].
    #[default]
    Off,
    /// One callback when the task finishes.
    Once,
    /// The same callback twice (KIE may duplicate).
    Twice,
}

/// A createTask request as received.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedCreate {
    /// The bearer key used (empty when none).
    pub key: String,
    pub model: String,
    pub body: Value,
    /// The task created, if one was.
    pub task_id: Option<String>,
    /// When the request arrived (for checking retry delays).
    pub received_at: Instant,
}

/// A recordInfo request as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedStatus {
    pub key: String,
    pub task_id: String,
}

/// An upload as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedUpload {
    pub key: String,
    pub file_name: String,
    pub content_type: Option<String>,
    pub upload_path: Option<String>,
    pub bytes: Vec<u8>,
    pub download_url: Option<String>,
}

/// A task as the fake sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskView {
    pub task_id: String,
    pub model: String,
    pub key: String,
    pub checks: u32,
    pub callback_url: Option<String>,
    pub callbacks_sent: u32,
}

struct State {
    scenario: Scenario,
    tasks: HashMap<String, FakeTask>,
    next_id: u64,
    creates: Vec<RecordedCreate>,
    statuses: Vec<RecordedStatus>,
    uploads: Vec<RecordedUpload>,
    files: HashMap<String, (Vec<u8>, String)>,
    one_shot: HashMap<Endpoint, VecDeque<Failure>>,
    malformed: HashMap<Endpoint, u32>,
    delays: HashMap<Endpoint, Duration>,
    key_failures: HashMap<String, Failure>,
    paused_models: HashSet<String>,
    extra_models: HashSet<String>,
    /// Per-key request times for limit enforcement: (max, window).
    limits: HashMap<Endpoint, (u32, Duration)>,
    seen: HashMap<(Endpoint, String), VecDeque<Instant>>,
    /// Whether the windows are exactly KIE's (no slack for the client's travel time).
    strict_limits: bool,
    /// Requests answered 429 for going beyond a limit, per endpoint.
    rate_limited: HashMap<Endpoint, u64>,
    credits: f64,
    callback_mode: CallbackMode,
    callback_hmac: Option<String>,
    retry_after_header: Option<u64>,
    chaos: Option<Chaos>,
    chaos_counts: ChaosCounts,
}

impl State {
    fn over_limit(&mut self, ep: Endpoint, key: &str) -> bool {
        let Some((max, per)) = self.limits.get(&ep).copied() else { return false };
        // A little slack unless strict: the client's window starts when it sends, ours when
        // we receive.
        let per = if self.strict_limits {
            per
        } else {
            per.saturating_sub((per / 10).min(Duration::from_millis(250)))
        };
        let now = Instant::now();
        let q = self.seen.entry((ep, key.to_owned())).or_default();
        while q.front().is_some_and(|t| now.duration_since(*t) >= per) {
            q.pop_front();
        }
        if q.len() >= max as usize {
            *self.rate_limited.entry(ep).or_default() += 1;
            return true;
        }
        q.push_back(now);
        false
    }

    fn take_one_shot(&mut self, ep: Endpoint) -> Option<Failure> {
        self.one_shot.get_mut(&ep).and_then(VecDeque::pop_front)
    }

    fn take_malformed(&mut self, ep: Endpoint) -> bool {
        match self.malformed.get_mut(&ep) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }

    /// The failure shared by every endpoint, checked in KIE's likely order.
    fn common_failure(&mut self, ep: Endpoint, key: &str) -> Option<ResponseTemplate> {
        if key.is_empty() {
            return Some(Failure::auth().response());
        }
        if self.over_limit(ep, key) {
            return Some(Failure::rate_limited().response());
        }
        if let Some(f) = self.key_failures.get(key) {
            return Some(f.response());
        }
        self.take_one_shot(ep).map(|f| f.response())
    }
}

fn bearer(req: &Request) -> String {
    req.headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .trim()
        .to_owned()
}

fn ok(data: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"code": 200, "msg": "success", "data": data}))
}

fn malformed() -> ResponseTemplate {
    ResponseTemplate::new(200)
        .set_body_raw("{\"code\":200,\"data\":{\"taskId\"", "application/json")
}

struct Handler {
    endpoint: Endpoint,
    state: Arc<Mutex<State>>,
    jobs_base: String,
    files_base: String,
}

impl Respond for Handler {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut st = lock(&self.state);
        let delay = st.delays.get(&self.endpoint).copied();
        let retry_after = st.retry_after_header;
        let resp = match self.endpoint {
            Endpoint::Create => self.create(&mut st, req),
            Endpoint::Status => self.status(&mut st, req),
            Endpoint::Upload => self.upload(&mut st, req),
            Endpoint::Credit => {
                let key = bearer(req);
                st.common_failure(Endpoint::Credit, &key).unwrap_or_else(|| ok(json!(st.credits)))
            }
        };
        let resp = match retry_after {
            Some(secs) => resp.insert_header("Retry-After", secs.to_string().as_str()),
            None => resp,
        };
        match delay {
            Some(d) => resp.set_delay(d),
            None => resp,
        }
    }
}

impl Handler {
    fn create(&self, st: &mut State, req: &Request) -> ResponseTemplate {
        let key = bearer(req);
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let model = body.get("model").and_then(Value::as_str).unwrap_or("").to_owned();
        st.creates.push(RecordedCreate {
            key: key.clone(),
            model: model.clone(),
            body: body.clone(),
            task_id: None,
            received_at: Instant::now(),
        });
        if let Some(resp) = st.common_failure(Endpoint::Create, &key) {
            return resp;
        }
        if st.paused_models.contains(&model) {
            return Failure::paused().response();
        }
        if let Err(f) = validate(&body, &model, &st.extra_models) {
            return f.response();
        }
        let fault = st.chaos.as_ref().and_then(Chaos::create_fault);
        match fault {
            Some(CreateFault::ServerError) => {
                st.chaos_counts.create_errors += 1;
                return Failure::server_error().response();
            }
            Some(CreateFault::Maintenance) => {
                st.chaos_counts.create_errors += 1;
                return Failure::maintenance().response();
            }
            Some(CreateFault::Hold) | None => {}
        }
        st.next_id += 1;
        let id =
            format!("task_{:06}_{}", st.next_id, &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let task = FakeTask {
            id: id.clone(),
            model,
            key,
            callback_url: body.get("callBackUrl").and_then(Value::as_str).map(str::to_owned),
            body,
            plan: st.scenario.clone(),
            created: Instant::now(),
            checks: 0,
            callbacks_sent: 0,
        };
        st.tasks.insert(id.clone(), task);
        if let Some(last) = st.creates.last_mut() {
            last.task_id = Some(id.clone());
        }
        // A malformed answer after the task exists: the dangerous case for duplicates.
        if st.take_malformed(Endpoint::Create) {
            return malformed();
        }
        if fault == Some(CreateFault::Hold) {
            // The task exists; the answer comes after the client gave up on it.
            st.chaos_counts.held_creates += 1;
            let hold = st.chaos.as_ref().map(|c| c.create_hold).unwrap_or_default();
            return ok(json!({"taskId": id})).set_delay(hold);
        }
        ok(json!({"taskId": id}))
    }

    fn status(&self, st: &mut State, req: &Request) -> ResponseTemplate {
        let key = bearer(req);
        let task_id = req
            .url
            .query_pairs()
            .find(|(k, _)| k == "taskId")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        st.statuses.push(RecordedStatus { key: key.clone(), task_id: task_id.clone() });
        if let Some(resp) = st.common_failure(Endpoint::Status, &key) {
            return resp;
        }
        if st.chaos.as_ref().is_some_and(Chaos::roll) {
            st.chaos_counts.status_errors += 1;
            return Failure::server_error().response();
        }
        if st.take_malformed(Endpoint::Status) {
            return malformed();
        }
        if task_id.is_empty() {
            return Failure::new(200, 400, "taskId parameter is required").response();
        }
        match st.tasks.get_mut(&task_id) {
            // A task belongs to the account (key) that created it.
            Some(task) if task.key == key => {
                // The answer reflects the checks made before this one: `SucceedAfter(n)` gives
                // n pending answers, then success.
                let record = task.record(&self.jobs_base);
                task.checks += 1;
                ok(record)
            }
            _ => Failure::new(200, 404, "Task not found").response(),
        }
    }

    fn upload(&self, st: &mut State, req: &Request) -> ResponseTemplate {
        let key = bearer(req);
        let content_type =
            req.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let parts = parse_multipart(&req.body, &content_type);
        let file = parts.iter().find(|p| p.name == "file");
        let field = |name: &str| {
            parts
                .iter()
                .find(|p| p.name == name)
                .map(|p| String::from_utf8_lossy(&p.data).into_owned())
        };
        let upload_path = field("uploadPath");
        let file_name =
            field("fileName").or_else(|| file.and_then(|f| f.filename.clone())).unwrap_or_default();
        let mut record = RecordedUpload {
            key: key.clone(),
            file_name: file.and_then(|f| f.filename.clone()).unwrap_or_default(),
            content_type: file.and_then(|f| f.content_type.clone()),
            upload_path: upload_path.clone(),
            bytes: file.map(|f| f.data.clone()).unwrap_or_default(),
            download_url: None,
        };
        let resp = if let Some(resp) = st.common_failure(Endpoint::Upload, &key) {
            resp
        } else if st.take_malformed(Endpoint::Upload) {
            malformed()
        } else if file.is_none() || upload_path.as_deref().is_none_or(str::is_empty) {
            Failure::new(200, 400, "file and uploadPath are required").response()
        } else {
            let path = format!("{}/{}", upload_path.unwrap_or_default(), file_name);
            let url = format!("{}/files/{path}", self.files_base);
            let mime = mime_for(&file_name);
            st.files.insert(format!("/files/{path}"), (record.bytes.clone(), mime.clone()));
            record.download_url = Some(url.clone());
            ResponseTemplate::new(200).set_body_json(json!({
                "success": true, "code": 200, "msg": "File uploaded successfully",
                "data": {"fileName": file_name, "filePath": path, "downloadUrl": url,
                         "fileSize": record.bytes.len(), "mimeType": mime,
                         "uploadedAt": "2026-11-22T10:00:00.000Z"}
            }))
        };
        st.uploads.push(record);
        resp
    }
}

fn lock(state: &Arc<Mutex<State>>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// Serves stored uploads and result videos.
struct Files {
    state: Arc<Mutex<State>>,
}

impl Respond for Files {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let p = req.url.path();
        if p.ends_with(".mp4") && p.starts_with("/files/task_") {
            return ResponseTemplate::new(200).set_body_raw(VIDEO_BYTES, "video/mp4");
        }
        match lock(&self.state).files.get(p) {
            Some((bytes, mime)) => ResponseTemplate::new(200).set_body_raw(bytes.clone(), mime),
            None => ResponseTemplate::new(404),
        }
    }
}

/// The fake. Dropping it stops its servers and its callback sender.
#[derive(Debug)]
pub struct FakeKie {
    jobs: MockServer,
    files: MockServer,
    state: Arc<Mutex<State>>,
    http: reqwest::Client,
    callbacks: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").field("tasks", &self.tasks.len()).finish()
    }
}

impl Drop for FakeKie {
    fn drop(&mut self) {
        self.callbacks.abort();
    }
}

impl FakeKie {
    /// Starts the jobs API and the upload host on two random ports. Tasks succeed after one
    /// pending status check; KIE's per-key limits are enforced (20 creates per 10 s, 10 status
    /// checks per s), answering 429 beyond them.
    pub async fn start() -> Self {
        let jobs = MockServer::start().await;
        let files = MockServer::start().await;
        let state = Arc::new(Mutex::new(State {
            scenario: Scenario::SucceedAfter(1),
            tasks: HashMap::new(),
            next_id: 0,
            creates: Vec::new(),
            statuses: Vec::new(),
            uploads: Vec::new(),
            files: HashMap::new(),
            one_shot: HashMap::new(),
            malformed: HashMap::new(),
            delays: HashMap::new(),
            key_failures: HashMap::new(),
            paused_models: HashSet::new(),
            extra_models: HashSet::new(),
            limits: HashMap::from([
                (Endpoint::Create, (20, Duration::from_secs(10))),
                (Endpoint::Status, (10, Duration::from_secs(1))),
            ]),
            seen: HashMap::new(),
            strict_limits: false,
            rate_limited: HashMap::new(),
            credits: 1000.0,
            callback_mode: CallbackMode::Off,
            callback_hmac: None,
            retry_after_header: None,
            chaos: None,
            chaos_counts: ChaosCounts::default(),
        }));
        let handler = |endpoint| Handler {
            endpoint,
            state: state.clone(),
            jobs_base: jobs.uri(),
            files_base: files.uri(),
        };
        Mock::given(method("POST"))
            .and(path("/api/v1/jobs/createTask"))
            .respond_with(handler(Endpoint::Create))
            .named("KIE createTask")
            .mount(&jobs)
            .await;
        Mock::given(method("GET"))
            .and(path("/api/v1/jobs/recordInfo"))
            .respond_with(handler(Endpoint::Status))
            .named("KIE recordInfo")
            .mount(&jobs)
            .await;
        Mock::given(method("GET"))
            .and(path("/api/v1/chat/credit"))
            .respond_with(handler(Endpoint::Credit))
            .named("KIE credit")
            .mount(&jobs)
            .await;
        Mock::given(method("GET"))
            .and(path_regex("^/files/"))
            .respond_with(Files { state: state.clone() })
            .mount(&jobs)
            .await;
        Mock::given(method("POST"))
            .and(path("/api/file-stream-upload"))
            .respond_with(handler(Endpoint::Upload))
            .named("KIE file-stream-upload")
            .mount(&files)
            .await;
        Mock::given(method("GET"))
            .and(path_regex("^/files/"))
            .respond_with(Files { state: state.clone() })
            .mount(&files)
            .await;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .expect("reqwest client for callbacks");
        let callbacks =
            tokio::spawn(callback_loop(Arc::downgrade(&state), http.clone(), jobs.uri()));
        Self { jobs, files, state, http, callbacks }
    }

    /// The jobs API base URL (`KIE_BASE_URL`).
    pub fn base_url(&self) -> Url {
        Url::parse(&self.jobs.uri()).expect("wiremock URI is a URL")
    }

    /// The upload host base URL (`KIE_UPLOAD_URL`), a different server from the jobs API.
    pub fn upload_url(&self) -> Url {
        Url::parse(&self.files.uri()).expect("wiremock URI is a URL")
    }

    /// The jobs API server, for extra mocks in a test.
    pub fn jobs_server(&self) -> &MockServer {
        &self.jobs
    }

    /// How tasks created from now on behave.
    pub fn script(&self, scenario: Scenario) {
        lock(&self.state).scenario = scenario;
    }

    /// The next `times` requests to `endpoint` answer `failure`.
    pub fn fail_next(&self, endpoint: Endpoint, times: usize, failure: Failure) {
        let mut st = lock(&self.state);
        let q = st.one_shot.entry(endpoint).or_default();
        q.extend(std::iter::repeat_n(failure, times));
    }

    /// Every request made with `key` answers `failure` until [`FakeKie::clear_key`].
    pub fn fail_key(&self, key: &str, failure: Failure) {
        lock(&self.state).key_failures.insert(key.to_owned(), failure);
    }

    pub fn clear_key(&self, key: &str) {
        lock(&self.state).key_failures.remove(key);
    }

    /// createTask with this model answers "This interface is temporarily paused".
    pub fn pause_model(&self, model: &str) {
        lock(&self.state).paused_models.insert(model.to_owned());
    }

    /// Accepts a model slug the fake does not know, with any input.
    pub fn allow_model(&self, model: &str) {
        lock(&self.state).extra_models.insert(model.to_owned());
    }

    /// The next `times` answers of `endpoint` are cut-off JSON. A malformed createTask answer
    /// comes after the task was created.
    pub fn malformed_next(&self, endpoint: Endpoint, times: u32) {
        *lock(&self.state).malformed.entry(endpoint).or_default() += times;
    }

    /// Every answer of `endpoint` is delayed by `delay`.
    pub fn delay(&self, endpoint: Endpoint, delay: Duration) {
        lock(&self.state).delays.insert(endpoint, delay);
    }

    /// Enforces the limits exactly as KIE states them, without the default slack for the
    /// client's travel time: a request arriving when `max` others arrived within the window
    /// is answered 429.
    pub fn strict_limits(&self) {
        lock(&self.state).strict_limits = true;
    }

    /// Requests to `endpoint` answered 429 for going beyond its per-key limit.
    pub fn rate_limited_count(&self, endpoint: Endpoint) -> u64 {
        lock(&self.state).rate_limited.get(&endpoint).copied().unwrap_or(0)
    }

    /// Sets (or with `None` lifts) the per-key limit enforced on `endpoint`.
    pub fn set_limit(&self, endpoint: Endpoint, limit: Option<(u32, Duration)>) {
        let mut st = lock(&self.state);
        match limit {
            Some(l) => st.limits.insert(endpoint, l),
            None => st.limits.remove(&endpoint),
        };
    }

    /// Every answer from now on carries `Retry-After: secs` (as a 429 from KIE's gateway may),
    /// or none with `None`.
    pub fn retry_after_header(&self, secs: Option<u64>) {
        lock(&self.state).retry_after_header = secs;
    }

    pub fn set_credits(&self, credits: f64) {
        lock(&self.state).credits = credits;
    }

    /// Automatic callbacks to each task's `callBackUrl`, signed with `hmac_key` when given.
    pub fn auto_callbacks(&self, mode: CallbackMode, hmac_key: Option<&str>) {
        let mut st = lock(&self.state);
        st.callback_mode = mode;
        st.callback_hmac = hmac_key.map(str::to_owned);
    }

    /// Turns random faults on (`Some`) or off. See [`Chaos`]; callbacks then also need
    /// [`FakeKie::auto_callbacks`].
    pub fn chaos(&self, chaos: Option<Chaos>) {
        lock(&self.state).chaos = chaos;
    }

    /// What the chaos did so far.
    pub fn chaos_counts(&self) -> ChaosCounts {
        lock(&self.state).chaos_counts
    }

    pub fn create_requests(&self) -> Vec<RecordedCreate> {
        lock(&self.state).creates.clone()
    }

    pub fn status_requests(&self) -> Vec<RecordedStatus> {
        lock(&self.state).statuses.clone()
    }

    pub fn uploads(&self) -> Vec<RecordedUpload> {
        lock(&self.state).uploads.clone()
    }

    /// Tasks created so far.
    pub fn tasks_created(&self) -> usize {
        lock(&self.state).tasks.len()
    }

    pub fn task(&self, task_id: &str) -> Option<TaskView> {
        lock(&self.state).tasks.get(task_id).map(|t| TaskView {
            task_id: t.id.clone(),
            model: t.model.clone(),
            key: t.key.clone(),
            checks: t.checks,
            callback_url: t.callback_url.clone(),
            callbacks_sent: t.callbacks_sent,
        })
    }

    /// The result URL a successful task reports.
    pub fn video_url(&self, task_id: &str) -> String {
        format!("{}/files/{task_id}.mp4", self.jobs.uri())
    }

    /// The callback body KIE would send for this task now.
    pub fn callback_body(&self, task_id: &str) -> Option<Value> {
        let uri = self.jobs.uri();
        lock(&self.state).tasks.get(task_id).map(|t| t.callback_body(&uri))
    }

    /// POSTs the task's current state to `url` as KIE's callback, signed with `signed` as the
    /// HMAC key when given. Returns the HTTP status the receiver answered.
    pub async fn send_callback(
        &self,
        url: &str,
        task_id: &str,
        signed: Option<&str>,
    ) -> Result<u16, reqwest::Error> {
        let body =
            self.callback_body(task_id).unwrap_or_else(|| json!({"data": {"taskId": task_id}}));
        post_callback(&self.http, url, task_id, &body, signed).await
    }
}

async fn post_callback(
    http: &reqwest::Client,
    url: &str,
    task_id: &str,
    body: &Value,
    signed: Option<&str>,
) -> Result<u16, reqwest::Error> {
    let mut req = http.post(url).json(body);
    if let Some(key) = signed {
        let ts = chrono::Utc::now().timestamp().to_string();
        let sig = sign(&Secret::new(key), task_id, &ts);
        req = req.header("X-Webhook-Timestamp", ts).header("X-Webhook-Signature", sig);
    }
    Ok(req.send().await?.status().as_u16())
}

/// Sends automatic callbacks for finished tasks, once or twice as configured; under chaos,
/// each one late, some twice, some followed by a stale "generating" one.
async fn callback_loop(state: std::sync::Weak<Mutex<State>>, http: reqwest::Client, base: String) {
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let Some(state) = state.upgrade() else { return };
        type Due = (String, String, Value, Option<String>, Duration);
        let due: Vec<Due> = {
            let mut guard = lock(&state);
            let st = &mut *guard;
            let times = match st.callback_mode {
                CallbackMode::Off => 0,
                CallbackMode::Once => 1,
                CallbackMode::Twice => 2,
            };
            let hmac = st.callback_hmac.clone();
            let mut due = Vec::new();
            for t in st.tasks.values_mut() {
                if t.callback_url.is_none() || t.callbacks_sent >= times || !t.is_final() {
                    continue;
                }
                t.callbacks_sent += 1;
                let url = t.callback_url.clone().unwrap_or_default();
                let body = t.callback_body(&base);
                let Some(chaos) = &st.chaos else {
                    due.push((url, t.id.clone(), body, hmac.clone(), Duration::ZERO));
                    continue;
                };
                let first = chaos.callback_delay();
                st.chaos_counts.late_callbacks += 1;
                if chaos.roll() {
                    st.chaos_counts.duplicate_callbacks += 1;
                    let again = first + chaos.callback_delay();
                    due.push((url.clone(), t.id.clone(), body.clone(), hmac.clone(), again));
                }
                if chaos.roll() {
                    st.chaos_counts.stale_callbacks += 1;
                    let later = first + chaos.callback_delay();
                    let stale = chaos::stale(&body);
                    due.push((url.clone(), t.id.clone(), stale, hmac.clone(), later));
                }
                due.push((url, t.id.clone(), body, hmac.clone(), first));
            }
            due
        };
        let retries = lock(&state).chaos.as_ref().map_or(0, |c| c.callback_retries);
        let weak = Arc::downgrade(&state);
        drop(state);
        for (url, id, body, hmac, delay) in due {
            if delay.is_zero() {
                if let Err(e) = post_callback(&http, &url, &id, &body, hmac.as_deref()).await {
                    tracing::debug!(error = %e, "fake KIE callback not delivered");
                }
                continue;
            }
            let http = http.clone();
            let weak = weak.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                // Under chaos a refused delivery (a 5xx, or nobody listening) is sent again a
                // few times, 1 s, 2 s, 4 s … later.
                for attempt in 0..=retries {
                    match post_callback(&http, &url, &id, &body, hmac.as_deref()).await {
                        Ok(status) if status < 500 => return,
                        Ok(status) => tracing::debug!(status, "fake KIE callback refused"),
                        Err(e) => tracing::debug!(error = %e, "fake KIE callback not delivered"),
                    }
                    if attempt == retries {
                        return;
                    }
                    if let Some(state) = weak.upgrade() {
                        lock(&state).chaos_counts.retried_callbacks += 1;
                    }
                    tokio::time::sleep(Duration::from_secs(1 << attempt.min(5))).await;
                }
            });
        }
    }
}
