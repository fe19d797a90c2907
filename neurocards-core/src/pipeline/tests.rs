//! The step machine and the slot pool against the ports' mocks, on paused time.

use super::job::{self, JobOutcome};
use super::{Inner, Pipeline, PipelineConfig, PipelineDeps, PipelineMetrics};
use crate::domain::*;
use crate::ports::*;
use crate::templates::TemplateCatalogue;
use chrono::Utc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Log = Arc<Mutex<Vec<String>>>;

fn push(log: &Log, entry: impl Into<String>) {
    log.lock().expect("log lock").push(entry.into());
}

fn entries(log: &Log) -> Vec<String> {
    log.lock().expect("log lock").clone()
}

fn template_id() -> TemplateId {
    TemplateCatalogue::builtin().iter().next().expect("a template").id.clone()
}

fn claimed(progress: JobProgress) -> ClaimedJob {
    ClaimedJob {
        lease: Lease { job_id: JobId(7), token: LeaseToken(70) },
        order_id: OrderId(3),
        user_id: UserId(42),
        index_in_order: 1,
        order_size: 1,
        spec: JobSpec {
            product_id: Some(ProductId(5)),
            template: template_id(),
            wishes: None,
            user_prompt: None,
            model: None,
            options: GenerationOptions::default(),
            language: Language::En,
        },
        progress,
        attempt: 1,
        temporary_retries: 0,
        rate_limit_retries: 0,
        rescues: 0,
        created_at: Utc::now(),
        lease_expires_at: Utc::now(),
    }
}

fn task() -> ProviderTaskRef {
    ProviderTaskRef {
        task_id: "task-1".into(),
        model: "sora-2-image-to-video".into(),
        key_id: "key-1".into(),
        submitted_at: Utc::now(),
    }
}

fn step_name(step: &StepResult) -> &'static str {
    match step {
        StepResult::ImageUploaded { .. } => "record image",
        StepResult::PromptBuilt { .. } => "record prompt",
        StepResult::Submitted { .. } => "record task",
        StepResult::Generated { .. } => "record video",
        StepResult::Delivered { .. } => "record delivery",
    }
}

/// Mocks that do the happy path and log every call; tests override what they need.
struct Mocks {
    queue: MockJobQueue,
    accounts: MockAccounts,
    products: MockProducts,
    provider: MockVideoProvider,
    prompts: MockPromptEngine,
    notifier: MockNotifier,
    photos: MockPhotoSource,
    progress: MockOrderProgressStore,
    signals: MockTaskSignals,
    log: Log,
}

impl Mocks {
    fn new() -> Self {
        let log: Log = Arc::default();
        let mut m = Self {
            queue: MockJobQueue::new(),
            accounts: MockAccounts::new(),
            products: MockProducts::new(),
            provider: MockVideoProvider::new(),
            prompts: MockPromptEngine::new(),
            notifier: MockNotifier::new(),
            photos: MockPhotoSource::new(),
            progress: MockOrderProgressStore::new(),
            signals: MockTaskSignals::new(),
            log: log.clone(),
        };
        m.products.expect_get().returning(|id, owner| {
            Ok(Some(Product {
                id,
                user_id: owner,
                photo: Some(PhotoRef { telegram_file_id: "file-1".into(), mime: ImageMime::Jpeg }),
                marketplace_url: None,
                description: "a red mug".into(),
                created_at: Utc::now(),
            }))
        });
        m.photos.expect_fetch_photo().returning(|_| {
            Ok(ImageData {
                bytes: bytes::Bytes::from_static(b"\xFF\xD8\xFF"),
                mime: ImageMime::Jpeg,
            })
        });
        let l = log.clone();
        m.provider.expect_upload_image().returning(move |_, _| {
            push(&l, "upload");
            Ok("https://files.example/job-7.jpg".into())
        });
        let l = log.clone();
        m.prompts.expect_build_prompt().returning(move |_| {
            push(&l, "prompt");
            Ok(Prompt::parse("a red mug on a table").expect("prompt"))
        });
        let l = log.clone();
        m.provider.expect_submit().returning(move |_| {
            push(&l, "submit");
            Ok(task())
        });
        let l = log.clone();
        m.queue.expect_record_step().returning(move |_, step| {
            push(&l, step_name(step));
            Ok(())
        });
        m.queue.expect_begin_step().returning(|_, _| Ok(()));
        let l = log.clone();
        m.queue.expect_complete().returning(move |leases| {
            push(&l, "complete");
            Ok(leases.iter().map(|l| l.job_id).collect())
        });
        m.signals.expect_wait_wakeup().returning(|_, _, _| Ok(false));
        m.progress.expect_claim_stage().returning(|_, _| Ok(ProgressSlot::Skip));
        m.progress.expect_order_status().returning(|order| {
            Ok(OrderStatus {
                order_id: order,
                user_id: UserId(42),
                language: Language::En,
                total: 1,
                succeeded: 0,
                failed: 0,
                price_per_video: Credits::new(1).expect("credits"),
            })
        });
        m.notifier.expect_chat_action().returning(|_| Ok(()));
        m
    }

    fn check_returns(&mut self, states: Vec<TaskState>) {
        let states = Mutex::new(states.into_iter());
        let l = self.log.clone();
        self.provider.expect_check().returning(move |_| {
            push(&l, "check");
            let next = states.lock().expect("states").next();
            Ok(next.unwrap_or(TaskState::Pending { progress: None }))
        });
    }

    fn video_sent(&mut self) {
        let l = self.log.clone();
        self.notifier.expect_send_video().returning(move |_, _| {
            push(&l, "send video");
            Ok(SentVideo { message_id: 100, file_id: Some("vid".into()) })
        });
    }

    fn deps(self) -> PipelineDeps {
        PipelineDeps {
            queue: Arc::new(self.queue),
            accounts: Arc::new(self.accounts),
            products: Arc::new(self.products),
            provider: Arc::new(self.provider),
            prompts: Arc::new(self.prompts),
            notifier: Arc::new(self.notifier),
            photos: Arc::new(self.photos),
            progress: Arc::new(self.progress),
            signals: Arc::new(self.signals),
            templates: Arc::new(TemplateCatalogue::builtin()),
        }
    }

    fn inner(self) -> Arc<Inner> {
        Arc::new(Inner::new(
            self.deps(),
            PipelineConfig { worker_id: WorkerId::new("test"), ..Default::default() },
            Arc::new(PipelineMetrics::default()),
        ))
    }
}

async fn run_job(inner: Arc<Inner>, job: ClaimedJob) -> JobOutcome {
    let (_tx, rx) = tokio::sync::watch::channel(false);
    job::run(inner, job, rx).await
}

fn succeeded(url: &str) -> TaskState {
    TaskState::Succeeded { video_urls: vec![url.into()] }
}

#[tokio::test(start_paused = true)]
async fn each_step_is_recorded_before_the_next_starts() {
    let mut m = Mocks::new();
    m.check_returns(vec![TaskState::Pending { progress: Some(10) }, succeeded("https://v/1.mp4")]);
    m.video_sent();
    let log = m.log.clone();
    let outcome = run_job(m.inner(), claimed(JobProgress::default())).await;
    assert_eq!(outcome, JobOutcome::Succeeded);
    assert_eq!(
        entries(&log),
        [
            "upload",
            "record image",
            "prompt",
            "record prompt",
            "submit",
            "record task",
            "check",
            "check",
            "record video",
            "send video",
            "record delivery",
            "complete"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn each_step_is_begun_under_the_lease_right_before_it_runs() {
    let mut m = Mocks::new();
    m.queue.checkpoint();
    let l = m.log.clone();
    m.queue.expect_begin_step().returning(move |lease, step| {
        assert_eq!(lease, Lease { job_id: JobId(7), token: LeaseToken(70) });
        push(&l, format!("begin {step}"));
        Ok(())
    });
    let l = m.log.clone();
    m.queue.expect_record_step().returning(move |_, step| {
        push(&l, step_name(step));
        Ok(())
    });
    let l = m.log.clone();
    m.queue.expect_complete().returning(move |leases| {
        push(&l, "complete");
        Ok(leases.iter().map(|l| l.job_id).collect())
    });
    m.check_returns(vec![succeeded("https://v/1.mp4")]);
    m.video_sent();
    let log = m.log.clone();
    let outcome = run_job(m.inner(), claimed(JobProgress::default())).await;
    assert_eq!(outcome, JobOutcome::Succeeded);
    assert_eq!(
        entries(&log),
        [
            "begin upload",
            "upload",
            "record image",
            "begin prompt",
            "prompt",
            "record prompt",
            "begin submit",
            "submit",
            "record task",
            "begin wait",
            "check",
            "record video",
            "begin deliver",
            "send video",
            "record delivery",
            "complete"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_lost_lease_at_a_step_begin_stops_the_job_before_the_paid_call() {
    let mut m = Mocks::new();
    m.queue.checkpoint();
    m.queue.expect_begin_step().returning(|lease, step| match step {
        JobStep::Submit => Err(QueueError::LeaseLost(lease.job_id)),
        _ => Ok(()),
    });
    m.queue.expect_record_step().returning(|_, _| Ok(()));
    m.provider.checkpoint();
    m.provider.expect_upload_image().returning(|_, _| Ok("https://files/1.jpg".into()));
    m.provider.expect_submit().never();
    m.queue.expect_complete().never();
    m.queue.expect_fail().never();
    m.queue.expect_reschedule().never();
    let outcome = run_job(m.inner(), claimed(JobProgress::default())).await;
    assert_eq!(outcome, JobOutcome::LeaseLost);
}

#[tokio::test(start_paused = true)]
async fn a_resumed_job_polls_its_recorded_task_and_never_submits_again() {
    let mut m = Mocks::new();
    m.provider.checkpoint();
    m.provider.expect_upload_image().never();
    m.provider.expect_submit().never();
    m.check_returns(vec![succeeded("https://v/1.mp4")]);
    m.video_sent();
    let log = m.log.clone();
    let progress = JobProgress {
        image_url: Some("https://files/1.jpg".into()),
        prompt: Some(Prompt::parse("p").expect("prompt")),
        provider_task: Some(task()),
        ..Default::default()
    };
    let outcome = run_job(m.inner(), claimed(progress)).await;
    assert_eq!(outcome, JobOutcome::Succeeded);
    assert_eq!(
        entries(&log),
        ["check", "record video", "send video", "record delivery", "complete"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_generated_job_whose_send_failed_is_delivered_without_generating_again() {
    let mut m = Mocks::new();
    m.provider.checkpoint();
    m.provider.expect_check().never();
    m.provider.expect_submit().never();
    m.video_sent();
    let log = m.log.clone();
    let progress = JobProgress {
        image_url: Some("https://files/1.jpg".into()),
        prompt: Some(Prompt::parse("p").expect("prompt")),
        provider_task: Some(task()),
        video_url: Some("https://v/1.mp4".into()),
        delivery: None,
        // The refused send withdrew its intent.
        entered_step: None,
    };
    assert_eq!(run_job(m.inner(), claimed(progress)).await, JobOutcome::Succeeded);
    assert_eq!(entries(&log), ["send video", "record delivery", "complete"]);
}

#[tokio::test(start_paused = true)]
async fn a_temporary_task_failure_abandons_the_task_and_retries_after_the_configured_delay() {
    let mut m = Mocks::new();
    let failure = ProviderError::new(ErrorClass::Temporary, "Internal Error, please try again");
    m.check_returns(vec![TaskState::Failed(failure)]);
    m.signals.expect_abandon_task().times(1).returning(|_| Ok(()));
    let delays: Arc<Mutex<Vec<(Reschedule, Duration)>>> = Arc::default();
    let d = delays.clone();
    m.queue.expect_reschedule().times(1).returning(move |_, how, delay| {
        d.lock().expect("lock").push((how.clone(), delay));
        Ok(())
    });
    m.queue.expect_fail().never();
    m.notifier.expect_send_failure().never();
    let outcome = run_job(m.inner(), claimed(JobProgress::default())).await;
    assert_eq!(outcome, JobOutcome::Retried(ErrorClass::Temporary));
    let delays = delays.lock().expect("lock").clone();
    let (how, delay) = &delays[0];
    assert!(matches!(how, Reschedule::Retry(f) if f.class == ErrorClass::Temporary));
    assert!(*delay >= Duration::from_secs(8) && *delay <= Duration::from_secs(12), "{delay:?}");
}

#[tokio::test(start_paused = true)]
async fn a_user_violation_fails_with_refund_and_tells_the_user_once() {
    let mut m = Mocks::new();
    m.provider.checkpoint();
    m.provider.expect_upload_image().returning(|_, _| Ok("https://files/1.jpg".into()));
    m.provider.expect_submit().returning(|_| {
        Err(ProviderError::new(ErrorClass::UserViolation, "real person in photo").with_code("422"))
    });
    m.queue.expect_reschedule().never();
    m.queue.expect_fail().times(1).returning(|_, f| {
        assert_eq!(f.class, ErrorClass::UserViolation);
        Ok(Refund { refunded: Credits::new(1).expect("c"), balance_after: Credits::ZERO })
    });
    m.notifier.expect_send_failure().times(1).returning(|_, notice| {
        assert_eq!(notice.refunded.get(), 1);
        assert_eq!(notice.detail.as_deref(), Some("real person in photo"));
        assert_eq!(notice.product_id, Some(ProductId(5)));
        Ok(MessageRef { chat_id: 42, message_id: 9 })
    });
    let outcome = run_job(m.inner(), claimed(JobProgress::default())).await;
    assert_eq!(outcome, JobOutcome::Failed(ErrorClass::UserViolation));
}

#[tokio::test(start_paused = true)]
async fn retryable_failures_with_no_retries_left_are_refunded() {
    let mut m = Mocks::new();
    m.check_returns(vec![TaskState::Failed(ProviderError::new(ErrorClass::RateLimit, "429"))]);
    m.queue.expect_reschedule().never();
    m.queue.expect_fail().times(1).returning(|_, _| {
        Ok(Refund { refunded: Credits::new(1).expect("c"), balance_after: Credits::ZERO })
    });
    m.notifier
        .expect_send_failure()
        .times(1)
        .returning(|_, _| Ok(MessageRef { chat_id: 42, message_id: 9 }));
    let mut job = claimed(JobProgress::default());
    job.rate_limit_retries = 3;
    let outcome = run_job(m.inner(), job).await;
    assert_eq!(outcome, JobOutcome::Failed(ErrorClass::RateLimit));
}

#[tokio::test(start_paused = true)]
async fn a_user_who_blocked_the_bot_ends_the_job_undeliverable_without_refund() {
    let mut m = Mocks::new();
    m.check_returns(vec![succeeded("https://v/1.mp4")]);
    m.notifier.expect_send_video().returning(|_, _| Err(NotifyError::BotBlocked));
    m.accounts.expect_set_bot_blocked().times(1).returning(|user, blocked| {
        assert_eq!((user, blocked), (UserId(42), true));
        Ok(())
    });
    m.queue.expect_fail().never();
    let log = m.log.clone();
    let outcome = run_job(m.inner(), claimed(JobProgress::default())).await;
    assert_eq!(outcome, JobOutcome::Undeliverable);
    assert!(entries(&log).ends_with(&["record delivery".to_owned(), "complete".to_owned()]));
}

#[tokio::test(start_paused = true)]
async fn a_failed_send_is_retried_durably_without_refund() {
    let mut m = Mocks::new();
    m.check_returns(vec![succeeded("https://v/1.mp4")]);
    m.notifier.expect_send_video().returning(|_, _| Err(NotifyError::Temporary("502".into())));
    m.queue.expect_withdraw_intent().times(1).returning(|_, _| Ok(()));
    m.signals.expect_abandon_task().never();
    m.queue.expect_reschedule().times(1).returning(|_, _, _| Ok(()));
    m.queue.expect_fail().never();
    let outcome = run_job(m.inner(), claimed(JobProgress::default())).await;
    assert_eq!(outcome, JobOutcome::Retried(ErrorClass::Temporary));
}

#[tokio::test(start_paused = true)]
async fn a_refused_video_download_is_a_technical_failure_refunded_not_the_users_fault() {
    let mut m = Mocks::new();
    m.check_returns(vec![succeeded("https://169.254.169.254/latest/meta-data")]);
    m.notifier.expect_send_video().returning(|_, _| {
        Err(NotifyError::Permanent(
            "the video URL was refused: 169.254.169.254 is not a public address".into(),
        ))
    });
    m.queue.expect_withdraw_intent().returning(|_, _| Ok(()));
    m.queue.expect_reschedule().never();
    m.queue.expect_fail().times(1).returning(|_, f| {
        assert_eq!(f.class, ErrorClass::Unknown, "not a user violation");
        Ok(Refund { refunded: Credits::new(1).expect("c"), balance_after: Credits::ZERO })
    });
    m.notifier.expect_send_failure().times(1).returning(|_, notice| {
        assert_eq!(notice.class, ErrorClass::Unknown);
        assert_eq!(notice.detail, None, "no provider reason is shown as the user's fault");
        Ok(MessageRef { chat_id: 42, message_id: 9 })
    });
    let outcome = run_job(m.inner(), claimed(JobProgress::default())).await;
    assert_eq!(outcome, JobOutcome::Failed(ErrorClass::Unknown));
}

#[tokio::test(start_paused = true)]
async fn a_lost_lease_stops_the_job_before_it_waits() {
    let mut m = Mocks::new();
    m.queue.checkpoint();
    m.queue.expect_begin_step().returning(|_, _| Ok(()));
    m.queue.expect_record_step().returning(|lease, step| match step {
        StepResult::Submitted { .. } => Err(QueueError::LeaseLost(lease.job_id)),
        _ => Ok(()),
    });
    m.provider.expect_check().never();
    m.queue.expect_complete().never();
    m.queue.expect_fail().never();
    m.queue.expect_reschedule().never();
    let outcome = run_job(m.inner(), claimed(JobProgress::default())).await;
    assert_eq!(outcome, JobOutcome::LeaseLost);
}

#[tokio::test(start_paused = true)]
async fn a_deadline_with_retries_left_keeps_the_task_for_the_next_attempt() {
    let mut m = Mocks::new();
    m.check_returns(vec![]);
    m.signals.expect_abandon_task().never();
    m.queue.expect_reschedule().times(1).returning(|_, how, _| {
        assert!(matches!(how, Reschedule::Retry(f) if f.class == ErrorClass::Temporary));
        Ok(())
    });
    let started = tokio::time::Instant::now();
    let outcome = run_job(m.inner(), claimed(JobProgress::default())).await;
    assert_eq!(outcome, JobOutcome::Retried(ErrorClass::Temporary));
    assert!(started.elapsed() >= Duration::from_secs(20 * 60));
}

#[tokio::test(start_paused = true)]
async fn a_task_finished_after_the_last_deadline_is_delivered_not_refunded() {
    let mut m = Mocks::new();
    m.provider.checkpoint();
    // Pending through the whole wait (including the check at the deadline), done on the
    // last look before the refund.
    let start = tokio::time::Instant::now();
    let at_deadline = Arc::new(Mutex::new(0u32));
    let c = at_deadline.clone();
    m.provider.expect_check().returning(move |_| {
        if start.elapsed() < Duration::from_secs(600) {
            return Ok(TaskState::Pending { progress: None });
        }
        let mut n = c.lock().expect("lock");
        *n += 1;
        Ok(if *n > 1 {
            succeeded("https://v/late.mp4")
        } else {
            TaskState::Pending { progress: None }
        })
    });
    m.video_sent();
    m.queue.expect_fail().never();
    let mut inner = m.inner();
    Arc::get_mut(&mut inner).expect("sole owner").config.wait.deadline = Duration::from_secs(600);
    let mut job = claimed(JobProgress {
        image_url: Some("https://files/1.jpg".into()),
        prompt: Some(Prompt::parse("p").expect("prompt")),
        provider_task: Some(task()),
        ..Default::default()
    });
    job.temporary_retries = 3;
    let outcome = run_job(inner, job).await;
    assert_eq!(outcome, JobOutcome::Succeeded);
}

#[tokio::test(start_paused = true)]
async fn polling_is_fast_at_first_then_slower() {
    let mut m = Mocks::new();
    let times: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let t = times.clone();
    let start = tokio::time::Instant::now();
    m.provider.checkpoint();
    m.provider.expect_upload_image().returning(|_, _| Ok("u".into()));
    m.provider.expect_submit().returning(|_| Ok(task()));
    m.provider.expect_check().returning(move |_| {
        let mut t = t.lock().expect("lock");
        t.push(start.elapsed());
        Ok(if t.len() >= 30 {
            succeeded("https://v")
        } else {
            TaskState::Pending { progress: None }
        })
    });
    m.video_sent();
    run_job(m.inner(), claimed(JobProgress::default())).await;
    let times = times.lock().expect("lock").clone();
    let gaps: Vec<u64> = times.windows(2).map(|w| (w[1] - w[0]).as_secs()).collect();
    assert_eq!(gaps.first(), Some(&3));
    assert!(gaps.contains(&8), "{gaps:?}");
    assert_eq!(gaps.last(), Some(&20));
}

#[tokio::test(start_paused = true)]
async fn a_callback_wakes_the_wait_and_the_status_check_decides() {
    let mut m = Mocks::new();
    m.signals.checkpoint();
    let wakeups = Arc::new(Mutex::new(0u32));
    let w = wakeups.clone();
    m.signals.expect_wait_wakeup().returning(move |job, task_id, _| {
        assert_eq!(job, JobId(7));
        assert_eq!(task_id, "task-1");
        let mut n = w.lock().expect("lock");
        *n += 1;
        // The first wake-up comes at once; nothing after.
        Ok(*n == 1)
    });
    m.check_returns(vec![TaskState::Succeeded { video_urls: vec!["https://kie/real.mp4".into()] }]);
    m.notifier.expect_send_video().times(1).returning(|_, video| {
        assert_eq!(video.video_url, "https://kie/real.mp4", "only the provider's answer counts");
        Ok(SentVideo { message_id: 100, file_id: None })
    });
    let started = tokio::time::Instant::now();
    let outcome = run_job(m.inner(), claimed(JobProgress::default())).await;
    assert_eq!(outcome, JobOutcome::Succeeded);
    assert!(started.elapsed() < Duration::from_secs(1), "no poll interval was waited");
}

#[tokio::test(start_paused = true)]
async fn a_wakeup_the_provider_does_not_confirm_keeps_the_job_waiting() {
    let mut m = Mocks::new();
    m.signals.checkpoint();
    let wakeups = Arc::new(Mutex::new(0u32));
    let w = wakeups.clone();
    m.signals.expect_wait_wakeup().returning(move |_, _, timeout| {
        let mut n = w.lock().expect("lock");
        *n += 1;
        Ok(*n == 1 || timeout.is_zero())
    });
    // The forged wake-up finds the task still generating; the next check finds it done.
    m.check_returns(vec![
        TaskState::Pending { progress: Some(10) },
        TaskState::Succeeded { video_urls: vec!["https://kie/real.mp4".into()] },
    ]);
    m.video_sent();
    let log = m.log.clone();
    let outcome = run_job(m.inner(), claimed(JobProgress::default())).await;
    assert_eq!(outcome, JobOutcome::Succeeded);
    let checks = log.lock().expect("log").iter().filter(|e| e.as_str() == "check").count();
    assert_eq!(checks, 2, "the unconfirmed wake-up changed nothing but one extra check");
}

#[tokio::test(start_paused = true)]
async fn shutdown_hands_a_waiting_job_back_to_the_queue() {
    let mut m = Mocks::new();
    m.check_returns(vec![]);
    let claims = Arc::new(Mutex::new(0u32));
    let c = claims.clone();
    m.queue.expect_claim().returning(move |_, max| {
        assert!(max >= 1);
        let mut n = c.lock().expect("lock");
        *n += 1;
        Ok(if *n == 1 { vec![claimed(JobProgress::default())] } else { vec![] })
    });
    m.queue.expect_wait_for_work().returning(|_| Ok(()));
    m.queue.expect_heartbeat().returning(|_, _| Ok(vec![]));
    m.queue.expect_rescue_expired().returning(|_| Ok(RescueReport::default()));
    m.progress.expect_claim_unannounced().returning(|_, _| Ok(vec![]));
    let released: Arc<Mutex<Vec<Lease>>> = Arc::default();
    let r = released.clone();
    m.queue.expect_release().times(1).returning(move |leases| {
        r.lock().expect("lock").extend_from_slice(leases);
        Ok(leases.len() as u64)
    });
    m.queue.expect_fail().never();
    let pipeline = Pipeline::new(
        m.deps(),
        PipelineConfig { worker_id: WorkerId::new("w1"), ..Default::default() },
    );
    let report = pipeline.run(tokio::time::sleep(Duration::from_secs(60))).await;
    assert_eq!(report.claimed, 1);
    assert_eq!(report.released, 1);
    assert_eq!(released.lock().expect("lock")[0].job_id, JobId(7));
}

#[tokio::test(start_paused = true)]
async fn a_job_whose_lease_was_lost_is_stopped_by_the_heartbeat() {
    let mut m = Mocks::new();
    m.check_returns(vec![]);
    let claims = Arc::new(Mutex::new(0u32));
    let c = claims.clone();
    m.queue.expect_claim().returning(move |_, _| {
        let mut n = c.lock().expect("lock");
        *n += 1;
        Ok(if *n == 1 { vec![claimed(JobProgress::default())] } else { vec![] })
    });
    m.queue.expect_wait_for_work().returning(|_| Ok(()));
    m.queue.expect_heartbeat().returning(|_, leases| Ok(leases.iter().map(|l| l.job_id).collect()));
    m.queue.expect_rescue_expired().returning(|_| Ok(RescueReport::default()));
    m.progress.expect_claim_unannounced().returning(|_, _| Ok(vec![]));
    // Nothing is written for the job once its lease is gone, not even a release.
    m.queue.expect_release().never();
    m.queue.expect_reschedule().never();
    m.queue.expect_fail().never();
    let pipeline = Pipeline::new(
        m.deps(),
        PipelineConfig { worker_id: WorkerId::new("w1"), ..Default::default() },
    );
    let metrics = pipeline.metrics();
    let report = pipeline.run(tokio::time::sleep(Duration::from_secs(120))).await;
    assert_eq!(report.claimed, 1);
    assert_eq!(report.released, 0);
    assert_eq!(metrics.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_new_order_is_announced_once_with_its_queue_position() {
    let mut m = Mocks::new();
    m.progress.expect_claim_unannounced().returning(|rank, _| {
        assert_eq!(rank, super::progress::RANK_QUEUED);
        Ok(vec![OrderToAnnounce {
            order_id: OrderId(3),
            user_id: UserId(42),
            language: Language::Ru,
            total: 3,
        }])
    });
    m.progress.expect_queue_position().returning(|_| Ok(QueuePosition { ahead: 10, running: 5 }));
    m.notifier.expect_show_progress().times(1).returning(|to, existing, stage| {
        assert_eq!(to.user_id, UserId(42));
        assert_eq!(existing, None);
        assert!(matches!(stage, ProgressStage::Queued { total: 3, position: 10, .. }));
        Ok(MessageRef { chat_id: 42, message_id: 50 })
    });
    m.progress.expect_set_message().times(1).returning(|order, msg| {
        assert_eq!((order, msg.message_id), (OrderId(3), 50));
        Ok(())
    });
    let inner = m.inner();
    assert_eq!(super::progress::announce_new_orders(&inner, 1).await, 1);
}

/// A Telegram whose `sendVideo` takes a minute (a big upload); everything else is instant.
struct SlowVideoNotifier {
    log: Log,
}

#[async_trait::async_trait]
impl Notifier for SlowVideoNotifier {
    async fn show_progress(
        &self,
        _to: Recipient,
        existing: Option<MessageRef>,
        _stage: &ProgressStage,
    ) -> Result<MessageRef, NotifyError> {
        Ok(existing.unwrap_or(MessageRef { chat_id: 42, message_id: 1 }))
    }

    async fn send_video(
        &self,
        _to: Recipient,
        _video: &VideoMessage,
    ) -> Result<SentVideo, NotifyError> {
        push(&self.log, "send video started");
        tokio::time::sleep(Duration::from_secs(60)).await;
        push(&self.log, "send video");
        Ok(SentVideo { message_id: 100, file_id: Some("vid".into()) })
    }

    async fn offer_video(
        &self,
        _to: Recipient,
        _video: &VideoMessage,
    ) -> Result<MessageRef, NotifyError> {
        push(&self.log, "offer video");
        Ok(MessageRef { chat_id: 42, message_id: 3 })
    }

    async fn send_failure(
        &self,
        _to: Recipient,
        _notice: &FailureNotice,
    ) -> Result<MessageRef, NotifyError> {
        Ok(MessageRef { chat_id: 42, message_id: 2 })
    }

    async fn chat_action(&self, _to: Recipient) -> Result<(), NotifyError> {
        Ok(())
    }
}

/// A photo source that never answers (a hung download).
struct HungPhotos;

#[async_trait::async_trait]
impl PhotoSource for HungPhotos {
    async fn fetch_photo(&self, _file_id: &str) -> Result<ImageData, PhotoError> {
        std::future::pending().await
    }
}

/// The slot pool's mocks for one claimed job, shut down after `stop_after`.
fn one_claim(m: &mut Mocks, job: ClaimedJob) -> Arc<Mutex<Vec<Lease>>> {
    let job = Mutex::new(Some(job));
    m.queue
        .expect_claim()
        .returning(move |_, _| Ok(job.lock().expect("lock").take().into_iter().collect()));
    m.queue.expect_wait_for_work().returning(|_| Ok(()));
    m.queue.expect_heartbeat().returning(|_, _| Ok(vec![]));
    m.queue.expect_rescue_expired().returning(|_| Ok(RescueReport::default()));
    m.progress.expect_claim_unannounced().returning(|_, _| Ok(vec![]));
    let released: Arc<Mutex<Vec<Lease>>> = Arc::default();
    let r = released.clone();
    m.queue.expect_release().returning(move |leases| {
        r.lock().expect("lock").extend_from_slice(leases);
        Ok(leases.len() as u64)
    });
    released
}

#[tokio::test(start_paused = true)]
async fn shutdown_never_cuts_off_a_video_being_sent_and_records_it() {
    let mut m = Mocks::new();
    let generated = JobProgress {
        image_url: Some("https://files.example/job-7.jpg".into()),
        prompt: Some(Prompt::parse("a red mug on a table").expect("prompt")),
        provider_task: Some(task()),
        video_url: Some("https://files.example/v.mp4".into()),
        delivery: None,
        ..JobProgress::default()
    };
    let released = one_claim(&mut m, claimed(generated));
    m.queue.expect_fail().never();
    let log = m.log.clone();
    let mut deps = m.deps();
    deps.notifier = Arc::new(SlowVideoNotifier { log: log.clone() });
    let config = PipelineConfig {
        worker_id: WorkerId::new("w1"),
        shutdown_grace: Duration::from_secs(20),
        ..Default::default()
    };
    let started = tokio::time::Instant::now();
    // Shutdown comes a second into the minute-long send, and the grace ends long before it.
    let report = Pipeline::new(deps, config).run(tokio::time::sleep(Duration::from_secs(1))).await;
    let took = started.elapsed();
    let entries = entries(&log);
    assert!(entries.contains(&"send video".to_owned()), "{entries:?}");
    let sent = entries.iter().position(|e| e == "send video").expect("sent");
    assert_eq!(entries.get(sent + 1).map(String::as_str), Some("record delivery"), "{entries:?}");
    assert!(entries.contains(&"complete".to_owned()), "{entries:?}");
    assert!(released.lock().expect("lock").is_empty(), "a delivered job is not handed back");
    assert_eq!(report.released, 0);
    assert!(took >= Duration::from_secs(60), "waited for the send: {took:?}");
}

#[tokio::test(start_paused = true)]
async fn after_the_grace_period_a_job_outside_side_effects_is_handed_back() {
    let mut m = Mocks::new();
    let released = one_claim(&mut m, claimed(JobProgress::default()));
    m.provider.expect_submit().never();
    let mut deps = m.deps();
    deps.photos = Arc::new(HungPhotos);
    let config = PipelineConfig {
        worker_id: WorkerId::new("w1"),
        shutdown_grace: Duration::from_secs(20),
        ..Default::default()
    };
    let started = tokio::time::Instant::now();
    let report = Pipeline::new(deps, config).run(tokio::time::sleep(Duration::from_secs(1))).await;
    let took = started.elapsed();
    assert_eq!(report.released, 1);
    assert_eq!(released.lock().expect("lock")[0].job_id, JobId(7));
    assert!(took < Duration::from_secs(25), "stopped at the end of the grace: {took:?}");
}

#[tokio::test(start_paused = true)]
async fn an_idle_pipeline_stops_at_once() {
    let mut m = Mocks::new();
    m.queue.expect_claim().returning(|_, _| Ok(vec![]));
    m.queue.expect_wait_for_work().returning(|_| Ok(()));
    m.queue.expect_heartbeat().returning(|_, _| Ok(vec![]));
    m.queue.expect_rescue_expired().returning(|_| Ok(RescueReport::default()));
    m.progress.expect_claim_unannounced().returning(|_, _| Ok(vec![]));
    m.queue.expect_release().never();
    let pipeline = Pipeline::new(
        m.deps(),
        PipelineConfig { worker_id: WorkerId::new("w1"), ..Default::default() },
    );
    let started = tokio::time::Instant::now();
    let report = pipeline.run(tokio::time::sleep(Duration::from_secs(3))).await;
    assert_eq!(report.claimed, 0);
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
}

/// The queue's expectations after `checkpoint()`: steps and completion succeed and are logged.
fn queue_accepts_steps(m: &mut Mocks) {
    m.queue.expect_begin_step().returning(|_, _| Ok(()));
    let l = m.log.clone();
    m.queue.expect_complete().returning(move |leases| {
        push(&l, "complete");
        Ok(leases.iter().map(|l| l.job_id).collect())
    });
}

fn recorded(prompt: bool) -> JobProgress {
    JobProgress {
        image_url: Some("https://files.example/job-7.jpg".into()),
        prompt: prompt.then(|| Prompt::parse("a red mug on a table").expect("prompt")),
        ..JobProgress::default()
    }
}

#[tokio::test(start_paused = true)]
async fn a_step_write_lost_to_a_database_blip_is_retried_and_the_task_is_created_once() {
    let mut m = Mocks::new();
    m.queue.checkpoint();
    queue_accepts_steps(&mut m);
    let failures = Arc::new(Mutex::new(0u32));
    let f = failures.clone();
    let l = m.log.clone();
    m.queue.expect_record_step().returning(move |_, step| {
        if matches!(step, StepResult::Submitted { .. }) {
            let mut n = f.lock().expect("lock");
            *n += 1;
            if *n <= 2 {
                return Err(QueueError::Unavailable("connection reset".into()));
            }
        }
        push(&l, step_name(step));
        Ok(())
    });
    m.check_returns(vec![succeeded("https://v/1.mp4")]);
    m.video_sent();
    let log = m.log.clone();
    let inner = m.inner();
    let outcome = run_job(inner.clone(), claimed(JobProgress::default())).await;
    assert_eq!(outcome, JobOutcome::Succeeded);
    let entries = entries(&log);
    assert_eq!(entries.iter().filter(|e| e.as_str() == "submit").count(), 1, "{entries:?}");
    assert_eq!(inner.metrics.store_retries(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_step_write_that_keeps_failing_ends_the_run_without_a_second_effect() {
    let mut m = Mocks::new();
    m.queue.checkpoint();
    queue_accepts_steps(&mut m);
    m.queue.expect_record_step().returning(|_, step| match step {
        StepResult::Submitted { .. } => Err(QueueError::Unavailable("database down".into())),
        _ => Ok(()),
    });
    let log = m.log.clone();
    let outcome = run_job(m.inner(), claimed(JobProgress::default())).await;
    assert!(matches!(outcome, JobOutcome::StorageError(_)), "{outcome:?}");
    assert_eq!(entries(&log).iter().filter(|e| e.as_str() == "submit").count(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_create_call_whose_answer_was_lost_is_adopted_from_its_callback() {
    let mut m = Mocks::new();
    m.provider.checkpoint();
    m.provider.expect_submit().never();
    m.provider.expect_check().returning(|task| {
        assert_eq!(task.task_id, "t-lost");
        assert_eq!(task.key_id, "key-1", "checked with the key that created it");
        Ok(succeeded("https://kie/lost.mp4"))
    });
    m.signals.expect_wakeup_tasks().returning(|job| {
        assert_eq!(job, JobId(7));
        Ok(vec![WakeupTask {
            task_id: "t-lost".into(),
            key_id: Some("key-1".into()),
            model: Some("sora-2-image-to-video".into()),
        }])
    });
    m.video_sent();
    let log = m.log.clone();
    let mut config = PipelineConfig { worker_id: WorkerId::new("test"), ..Default::default() };
    config.callback_url = Some(crate::secret::Secret::new("https://bot/kie/callback/s"));
    let inner = Arc::new(Inner::new(m.deps(), config, Arc::new(PipelineMetrics::default())));
    let progress = JobProgress { entered_step: Some(JobStep::Submit), ..recorded(true) };
    let outcome = run_job(inner.clone(), claimed(progress)).await;
    assert_eq!(outcome, JobOutcome::Succeeded);
    assert!(entries(&log).contains(&"record task".to_owned()), "{:?}", entries(&log));
    assert_eq!(inner.metrics.provider_calls("submit"), 1, "counted as adopted");
}

#[tokio::test(start_paused = true)]
async fn without_callbacks_a_lost_create_answer_creates_one_new_task_and_says_so() {
    let mut m = Mocks::new();
    m.signals.expect_wakeup_tasks().returning(|_| Ok(vec![]));
    m.check_returns(vec![succeeded("https://v/1.mp4")]);
    m.video_sent();
    let log = m.log.clone();
    let inner = m.inner();
    let progress = JobProgress { entered_step: Some(JobStep::Submit), ..recorded(true) };
    let outcome = run_job(inner.clone(), claimed(progress)).await;
    assert_eq!(outcome, JobOutcome::Succeeded);
    assert_eq!(entries(&log).iter().filter(|e| e.as_str() == "submit").count(), 1);
    assert!(inner.metrics.render().contains("result=\"resubmitted_after_lost_answer\"} 1"));
}

#[tokio::test(start_paused = true)]
async fn a_refused_create_clears_its_intent_and_a_lost_answer_keeps_it() {
    for may_exist in [false, true] {
        let mut m = Mocks::new();
        m.provider.checkpoint();
        m.provider.expect_submit().times(1).returning(move |_| {
            let mut e = ProviderError::new(ErrorClass::Temporary, "KIE answered HTTP 500");
            e.task_may_exist = may_exist;
            Err(e)
        });
        m.signals.expect_abandon_task().times(usize::from(!may_exist)).returning(|_| Ok(()));
        m.queue.expect_reschedule().times(1).returning(|_, _, _| Ok(()));
        let outcome = run_job(m.inner(), claimed(recorded(true))).await;
        assert_eq!(outcome, JobOutcome::Retried(ErrorClass::Temporary), "may exist: {may_exist}");
    }
}

#[tokio::test(start_paused = true)]
async fn no_paid_call_starts_while_this_process_cannot_heartbeat() {
    let mut m = Mocks::new();
    m.provider.checkpoint();
    m.provider.expect_submit().never();
    let inner = m.inner();
    // Heartbeats have been failing for a whole lease (the default lease is 90 s).
    inner.heartbeat_failed();
    tokio::time::advance(Duration::from_secs(90)).await;
    let outcome = run_job(inner, claimed(recorded(true))).await;
    assert!(matches!(outcome, JobOutcome::StorageError(_)), "{outcome:?}");
}

fn snapshot(id: JobId, class: ErrorClass) -> JobSnapshot {
    let job = claimed(JobProgress::default());
    JobSnapshot {
        id,
        order_id: job.order_id,
        user_id: job.user_id,
        status: JobStatus::Failed,
        spec: job.spec,
        progress: JobProgress::default(),
        attempt: 4,
        rescues: 4,
        blamed_rescues: 4,
        temporary_retries: 0,
        rate_limit_retries: 0,
        run_at: Utc::now(),
        leased_by: None,
        error_class: Some(class),
        error_message: Some("poison job".into()),
        refunded: true,
        created_at: Utc::now(),
        finished_at: Some(Utc::now()),
    }
}

#[tokio::test(start_paused = true)]
async fn jobs_failed_by_a_rescue_sweep_are_told_once_and_counted_by_reason() {
    let mut m = Mocks::new();
    m.queue.expect_claim().returning(|_, _| Ok(vec![]));
    m.queue.expect_wait_for_work().returning(|_| Ok(()));
    m.queue.expect_heartbeat().returning(|_, _| Ok(vec![]));
    m.progress.expect_claim_unannounced().returning(|_, _| Ok(vec![]));
    let sweeps = Arc::new(Mutex::new(0u32));
    let s = sweeps.clone();
    // One sweep: job 7 is a poison job, job 8 passed the deadline, job 9 was delivered, job 10
    // is a blamed rescue sent back, 11 and 12 are bystanders.
    m.queue.expect_rescue_expired().returning(move |_| {
        let mut n = s.lock().expect("lock");
        *n += 1;
        if *n > 1 {
            return Ok(RescueReport::default());
        }
        Ok(RescueReport {
            requeued: vec![JobId(10), JobId(11), JobId(12)],
            failed: vec![JobId(7), JobId(8)],
            completed: vec![JobId(9)],
            blamed: vec![JobId(7), JobId(10)],
            past_deadline: vec![JobId(8)],
        })
    });
    m.queue.expect_job().returning(|id| {
        let class = if id == JobId(8) { ErrorClass::Temporary } else { ErrorClass::Unknown };
        Ok(Some(snapshot(id, class)))
    });
    let told: Arc<Mutex<Vec<(JobId, ErrorClass)>>> = Arc::default();
    let t = told.clone();
    m.notifier.expect_send_failure().returning(move |_, notice| {
        t.lock().expect("lock").push((notice.job_id, notice.class));
        Ok(MessageRef { chat_id: 42, message_id: 9 })
    });
    let pipeline = Pipeline::new(
        m.deps(),
        PipelineConfig { worker_id: WorkerId::new("w1"), ..Default::default() },
    );
    let metrics = pipeline.metrics();
    pipeline.run(tokio::time::sleep(Duration::from_secs(60))).await;

    let mut told = told.lock().expect("lock").clone();
    told.sort_by_key(|(id, _)| *id);
    assert_eq!(told, vec![(JobId(7), ErrorClass::Unknown), (JobId(8), ErrorClass::Temporary)]);
    assert!(*sweeps.lock().expect("lock") > 1, "the sweep ran again and told nobody twice");
    assert_eq!(metrics.poison_jobs(), 1);
    assert_eq!(metrics.rescues("blamed"), 2);
    assert_eq!(metrics.rescues("deadline"), 1);
    assert_eq!(metrics.rescues("bystander"), 3);
    let text = metrics.render();
    assert!(text.contains("neurocards_rescues_total{reason=\"bystander\"} 3"), "{text}");
    assert!(text.contains("neurocards_poison_jobs_total 1"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn a_failed_status_check_after_a_wakeup_is_retried_soon_not_at_the_fallback_interval() {
    let mut m = Mocks::new();
    m.signals.checkpoint();
    let wakeups = Arc::new(Mutex::new(0u32));
    let w = wakeups.clone();
    // One callback wake-up; nothing after it.
    m.signals.expect_wait_wakeup().returning(move |_, _, _| {
        let mut n = w.lock().expect("lock");
        *n += 1;
        Ok(*n == 1)
    });
    m.signals.expect_wakeup_tasks().returning(|_| Ok(vec![]));
    let times: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let t = times.clone();
    let start = tokio::time::Instant::now();
    m.provider.checkpoint();
    m.provider.expect_upload_image().returning(|_, _| Ok("u".into()));
    m.provider.expect_submit().returning(|_| Ok(task()));
    m.provider.expect_check().returning(move |_| {
        let mut t = t.lock().expect("lock");
        t.push(start.elapsed());
        if t.len() == 1 {
            Err(ProviderError::new(ErrorClass::Temporary, "Server error"))
        } else {
            Ok(succeeded("https://v"))
        }
    });
    m.video_sent();
    let config = PipelineConfig {
        worker_id: WorkerId::new("test"),
        callback_url: Some(crate::secret::Secret::new("https://bot.example/kie/callback/s")),
        ..Default::default()
    };
    let inner = Arc::new(Inner::new(m.deps(), config, Arc::new(PipelineMetrics::default())));
    let outcome = run_job(inner, claimed(JobProgress::default())).await;
    assert_eq!(outcome, JobOutcome::Succeeded);
    let times = times.lock().expect("lock").clone();
    assert_eq!(times.len(), 2, "{times:?}");
    let gap = times[1] - times[0];
    assert!(gap <= Duration::from_secs(5), "retried at the fast interval, not after {gap:?}");
}

/// A job whose video is recorded as generated, with `entered` as the last step begun.
fn generated(entered: Option<JobStep>) -> JobProgress {
    JobProgress {
        provider_task: Some(task()),
        video_url: Some("https://files.example/v/7.mp4".into()),
        entered_step: entered,
        ..recorded(true)
    }
}

#[tokio::test(start_paused = true)]
async fn a_video_whose_earlier_send_may_have_arrived_is_offered_never_sent_again() {
    let mut m = Mocks::new();
    m.notifier.expect_send_video().never();
    let l = m.log.clone();
    m.notifier.expect_offer_video().times(1).returning(move |to, video| {
        assert_eq!(to.user_id, UserId(42));
        assert_eq!(video.job_id, JobId(7));
        assert_eq!(video.video_url, "https://files.example/v/7.mp4");
        push(&l, "offer video");
        Ok(MessageRef { chat_id: 42, message_id: 101 })
    });
    m.queue.checkpoint();
    m.queue.expect_begin_step().returning(|_, _| Ok(()));
    let delivered = Arc::new(Mutex::new(None));
    let d = delivered.clone();
    m.queue.expect_record_step().returning(move |_, step| {
        if let StepResult::Delivered { delivery } = step {
            *d.lock().expect("lock") = Some(delivery.clone());
        }
        Ok(())
    });
    m.queue.expect_complete().returning(|leases| Ok(leases.iter().map(|l| l.job_id).collect()));
    let log = m.log.clone();
    let outcome = run_job(m.inner(), claimed(generated(Some(JobStep::Deliver)))).await;
    assert_eq!(outcome, JobOutcome::Succeeded);
    assert_eq!(entries(&log), ["offer video"]);
    assert_eq!(
        delivered.lock().expect("lock").clone(),
        Some(Delivery::Sent { message_id: 101, file_id: None })
    );
}

#[tokio::test(start_paused = true)]
async fn a_send_telegram_refused_withdraws_its_intent_and_an_unanswered_one_keeps_it() {
    for unanswered in [false, true] {
        let mut m = Mocks::new();
        m.notifier.expect_offer_video().never();
        m.notifier.expect_send_video().times(1).returning(move |_, _| {
            Err(if unanswered {
                NotifyError::Unanswered("operation timed out".into())
            } else {
                NotifyError::Temporary("Bad Gateway".into())
            })
        });
        m.queue
            .expect_withdraw_intent()
            .withf(|lease, step| lease.job_id == JobId(7) && *step == JobStep::Deliver)
            .times(usize::from(!unanswered))
            .returning(|_, _| Ok(()));
        m.queue.expect_reschedule().times(1).returning(|_, _, _| Ok(()));
        m.progress.expect_claim_stage().returning(|_, _| Ok(ProgressSlot::Skip));
        let outcome = run_job(m.inner(), claimed(generated(Some(JobStep::Wait)))).await;
        assert_eq!(outcome, JobOutcome::Retried(ErrorClass::Temporary), "unanswered: {unanswered}");
    }
}
