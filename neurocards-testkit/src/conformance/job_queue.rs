//! The [`JobQueue`] conformance suite. Each function states one guarantee and panics when it
//! does not hold. A backend's tests build a fresh [`QueueFixture`] per test and call them.

use neurocards_core::domain::{
    AspectRatio, ClaimedJob, Credits, Delivery, ErrorClass, GenerationOptions, JobId, JobSpec,
    JobStatus, JobStep, Language, Lease, LeaseToken, OrderKey, Prompt, ProviderTaskRef, StepResult,
    TemplateId, UserId, VideoCount, WorkerId,
};
use neurocards_core::ports::{
    CancelScope, JobFailure, JobFilter, JobQueue, NewOrder, QueueError, Reschedule, RetryOutcome,
};
use std::collections::HashSet;
use std::time::Duration;

/// What the suite needs besides the queue: users with credits, and ways to move time forward
/// for one job (a backend decides how "the lease expired" or "the retry is due" is faked).
#[async_trait::async_trait]
pub trait QueueFixture: Send + Sync {
    type Queue: JobQueue;

    fn queue(&self) -> &Self::Queue;

    /// The queue's per-user in-flight cap.
    fn per_user_cap(&self) -> u32;

    /// The queue's maximum number of rescues before a job is failed.
    fn max_rescues(&self) -> u32;

    /// Creates a new user holding `credits`.
    async fn funded_user(&self, credits: i64) -> UserId;

    /// The user's balance as the accounts store reports it.
    async fn balance(&self, user: UserId) -> Credits;

    /// Makes the job's current lease expire, as if its worker died a long time ago.
    async fn expire_lease(&self, job: JobId);

    /// Makes a queued job's `run_at` due now, as if its retry delay had passed.
    async fn make_due(&self, job: JobId);

    /// Makes the job look older than the queue's job deadline (as if first claimed, and
    /// created, that long ago plus a minute).
    async fn make_past_deadline(&self, job: JobId);
}

/// A plain spec for test orders.
pub fn spec() -> JobSpec {
    JobSpec {
        product_id: None,
        template: TemplateId::parse("ugc").expect("valid template id"),
        wishes: Some("on a kitchen table".to_owned()),
        user_prompt: None,
        model: None,
        options: GenerationOptions::default(),
        language: Language::En,
    }
}

/// An order of `count` videos at `price` each, with a fresh key.
pub fn order(user: UserId, count: u32, price: i64) -> NewOrder {
    NewOrder {
        user_id: user,
        key: OrderKey::random(),
        count: VideoCount::bulk(count).expect("count within 1..=1000"),
        price_per_video: Credits::new(price).expect("non-negative price"),
        spec: spec(),
    }
}

fn failure(class: ErrorClass, message: &str) -> JobFailure {
    JobFailure { class, message: message.to_owned() }
}

fn credits(n: i64) -> Credits {
    Credits::new(n).expect("non-negative")
}

async fn claim_all<Q: JobQueue>(q: &Q, worker: &WorkerId) -> Vec<ClaimedJob> {
    let mut all = Vec::new();
    loop {
        let batch = q.claim(worker, 50).await.expect("claim");
        if batch.is_empty() {
            return all;
        }
        all.extend(batch);
    }
}

/// Placing an order charges `count × price` once and creates `count` queued jobs.
pub async fn place_order_charges_and_enqueues<F: QueueFixture>(f: &F) {
    let user = f.funded_user(10).await;
    let placed = f.queue().place_order(&order(user, 3, 2)).await.expect("order placed");
    assert!(placed.newly_placed);
    assert_eq!(placed.charged, credits(6));
    assert_eq!(placed.balance_after, credits(4));
    assert_eq!(placed.jobs.len(), 3);
    assert_eq!(f.balance(user).await, credits(4));
    for job in &placed.jobs {
        let snap = f.queue().job(*job).await.expect("read").expect("job exists");
        assert_eq!(snap.status, JobStatus::Queued);
        assert_eq!(snap.order_id, placed.order_id);
        assert_eq!(snap.user_id, user);
        assert_eq!(snap.spec, spec());
        assert!(!snap.refunded);
    }
}

/// The same order key a second time returns the first order and charges nothing.
pub async fn repeated_order_key_places_one_order<F: QueueFixture>(f: &F) {
    let user = f.funded_user(10).await;
    let new = order(user, 3, 1);
    let first = f.queue().place_order(&new).await.expect("first placement");
    let second = f.queue().place_order(&new).await.expect("second placement");
    assert!(first.newly_placed);
    assert!(!second.newly_placed);
    assert_eq!(second.order_id, first.order_id);
    assert_eq!(second.jobs, first.jobs);
    assert_eq!(second.charged, Credits::ZERO);
    assert_eq!(second.balance_after, credits(7));
    assert_eq!(f.balance(user).await, credits(7));
}

/// Not enough credits is a typed error and writes nothing.
pub async fn insufficient_credits_write_nothing<F: QueueFixture>(f: &F) {
    let user = f.funded_user(2).await;
    let err = f.queue().place_order(&order(user, 3, 1)).await.expect_err("must be refused");
    match err {
        QueueError::InsufficientCredits { needed, available } => {
            assert_eq!(needed, credits(3));
            assert_eq!(available, credits(2));
        }
        other => panic!("expected InsufficientCredits, got {other:?}"),
    }
    assert_eq!(f.balance(user).await, credits(2));
    let claimed = f.queue().claim(&WorkerId::new("w"), 10).await.expect("claim");
    assert!(claimed.is_empty(), "a refused order must create no jobs");
}

/// An order for a user that does not exist is refused as not found.
pub async fn order_for_unknown_user_is_not_found<F: QueueFixture>(f: &F) {
    let err = f.queue().place_order(&order(UserId(-42), 1, 1)).await.expect_err("refused");
    assert!(matches!(err, QueueError::NotFound(_)), "got {err:?}");
}

/// Each job is claimed once; a claimed job carries its order's spec and position.
pub async fn each_job_is_claimed_once<F: QueueFixture>(f: &F) {
    let user = f.funded_user(10).await;
    let placed = f.queue().place_order(&order(user, 5, 1)).await.expect("order");
    let worker = WorkerId::new("w1");
    let claimed = claim_all(f.queue(), &worker).await;
    let ids: Vec<JobId> = claimed.iter().map(|c| c.lease.job_id).collect();
    assert_eq!(ids.len(), 5.min(f.per_user_cap() as usize));
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len(), "no job claimed twice");
    for c in &claimed {
        assert!(placed.jobs.contains(&c.lease.job_id));
        assert_eq!(c.order_id, placed.order_id);
        assert_eq!(c.order_size, 5);
        assert_eq!(c.attempt, 1);
        assert_eq!(c.spec, spec());
        assert!(c.lease_expires_at > chrono::Utc::now());
        let snap = f.queue().job(c.lease.job_id).await.expect("read").expect("exists");
        assert_eq!(snap.status, JobStatus::Running);
        assert_eq!(snap.leased_by.as_deref(), Some("w1"));
    }
    let positions: HashSet<u32> = claimed.iter().map(|c| c.index_in_order).collect();
    assert!(positions.iter().all(|p| (1..=5).contains(p)));
    assert!(f.queue().claim(&WorkerId::new("w2"), 10).await.expect("claim").len() <= 5 - ids.len());
}

/// The lease token changes on every claim, and writes with an older token are refused.
pub async fn lease_token_changes_on_every_claim<F: QueueFixture>(f: &F) {
    let user = f.funded_user(1).await;
    f.queue().place_order(&order(user, 1, 1)).await.expect("order");
    let first = f.queue().claim(&WorkerId::new("a"), 1).await.expect("claim").remove(0);
    assert_eq!(f.queue().release(&[first.lease]).await.expect("release"), 1);
    let second = f.queue().claim(&WorkerId::new("b"), 1).await.expect("claim").remove(0);
    assert_eq!(second.lease.job_id, first.lease.job_id);
    assert_ne!(second.lease.token, first.lease.token);
    assert_eq!(second.attempt, 2);
    let step = StepResult::ImageUploaded { image_url: "https://img/1.jpg".to_owned() };
    let err = f.queue().record_step(first.lease, &step).await.expect_err("stale token");
    assert!(matches!(err, QueueError::LeaseLost(id) if id == first.lease.job_id), "got {err:?}");
    f.queue().record_step(second.lease, &step).await.expect("current token works");
}

/// Every write with a stale token fails with `LeaseLost` and changes nothing; `complete`
/// leaves such jobs out instead of failing the batch.
pub async fn stale_token_writes_are_refused<F: QueueFixture>(f: &F) {
    let user = f.funded_user(2).await;
    f.queue().place_order(&order(user, 2, 1)).await.expect("order");
    let jobs = f.queue().claim(&WorkerId::new("w"), 2).await.expect("claim");
    assert_eq!(jobs.len(), 2);
    let (a, b) = (jobs[0].lease, jobs[1].lease);
    let stale = Lease { job_id: a.job_id, token: LeaseToken(a.token.0 - 1) };
    let q = f.queue();

    let step = StepResult::Generated { video_url: "https://v/1.mp4".to_owned() };
    assert!(matches!(q.record_step(stale, &step).await, Err(QueueError::LeaseLost(_))));
    assert!(matches!(
        q.fail(stale, &failure(ErrorClass::Unknown, "x")).await,
        Err(QueueError::LeaseLost(_))
    ));
    assert!(matches!(
        q.reschedule(stale, &Reschedule::Snooze { reason: "x".into() }, Duration::ZERO).await,
        Err(QueueError::LeaseLost(_))
    ));
    assert_eq!(q.release(&[stale]).await.expect("release"), 0);
    let done = q.complete(&[stale, b]).await.expect("complete");
    assert_eq!(done, vec![b.job_id], "only the job with a current token completes");

    let snap = q.job(a.job_id).await.expect("read").expect("exists");
    assert_eq!(snap.status, JobStatus::Running);
    assert_eq!(snap.progress.video_url, None);
    assert_eq!(f.balance(user).await, Credits::ZERO, "no refund through a stale token");

    let missing = Lease { job_id: JobId(i64::MAX), token: LeaseToken(1) };
    assert!(matches!(q.record_step(missing, &step).await, Err(QueueError::NotFound(_))));
}

/// Step results are recorded and come back to the worker that claims the job next.
pub async fn steps_are_recorded_and_resumed<F: QueueFixture>(f: &F) {
    let user = f.funded_user(1).await;
    f.queue().place_order(&order(user, 1, 1)).await.expect("order");
    let job = f.queue().claim(&WorkerId::new("a"), 1).await.expect("claim").remove(0);
    let task = ProviderTaskRef {
        task_id: "task-1".to_owned(),
        model: "sora-2-image-to-video".to_owned(),
        key_id: "key-1".to_owned(),
        submitted_at: chrono::Utc::now(),
    };
    let prompt = Prompt::parse("A bottle on a table, slow pan").expect("valid prompt");
    let steps = [
        StepResult::ImageUploaded { image_url: "https://img/1.jpg".to_owned() },
        StepResult::PromptBuilt { prompt: prompt.clone() },
        StepResult::Submitted { task: task.clone() },
    ];
    for step in &steps {
        f.queue().record_step(job.lease, step).await.expect("record step");
    }
    f.expire_lease(job.lease.job_id).await;
    let report = f.queue().rescue_expired(10).await.expect("rescue");
    assert_eq!(report.requeued, vec![job.lease.job_id]);
    let again = f.queue().claim(&WorkerId::new("b"), 1).await.expect("claim").remove(0);
    assert_eq!(again.rescues, 1);
    assert_eq!(again.progress.image_url.as_deref(), Some("https://img/1.jpg"));
    assert_eq!(again.progress.prompt, Some(prompt));
    let got = again.progress.provider_task.expect("task recorded");
    assert_eq!(got.task_id, task.task_id);
    assert_eq!(got.key_id, task.key_id);
    assert_eq!(got.model, task.model);

    let q = f.queue();
    q.record_step(again.lease, &StepResult::Generated { video_url: "https://v/1.mp4".into() })
        .await
        .expect("generated");
    let delivery = Delivery::Sent { message_id: 77, file_id: Some("file-1".to_owned()) };
    q.record_step(again.lease, &StepResult::Delivered { delivery: delivery.clone() })
        .await
        .expect("delivered");
    assert_eq!(q.complete(&[again.lease]).await.expect("complete"), vec![again.lease.job_id]);
    let snap = q.job(again.lease.job_id).await.expect("read").expect("exists");
    assert_eq!(snap.status, JobStatus::Succeeded);
    assert_eq!(snap.progress.delivery, Some(delivery));
    assert_eq!(snap.progress.video_url.as_deref(), Some("https://v/1.mp4"));
    assert!(snap.finished_at.is_some());
    assert_eq!(snap.leased_by, None);
}

/// A completed batch is succeeded; completing again changes nothing.
pub async fn complete_finishes_a_batch_once<F: QueueFixture>(f: &F) {
    let user = f.funded_user(3).await;
    f.queue().place_order(&order(user, 3, 1)).await.expect("order");
    let jobs = f.queue().claim(&WorkerId::new("w"), 3).await.expect("claim");
    let leases: Vec<Lease> = jobs.iter().map(|j| j.lease).collect();
    let mut done = f.queue().complete(&leases).await.expect("complete");
    done.sort();
    let mut expected: Vec<JobId> = leases.iter().map(|l| l.job_id).collect();
    expected.sort();
    assert_eq!(done, expected);
    assert!(f.queue().complete(&leases).await.expect("again").is_empty());
    for l in &leases {
        let snap = f.queue().job(l.job_id).await.expect("read").expect("exists");
        assert_eq!(snap.status, JobStatus::Succeeded);
        assert!(!snap.refunded);
    }
    assert_eq!(f.balance(user).await, Credits::ZERO);
}

/// A retry puts the job back with a later `run_at`, counts against its class only, and the job
/// is not claimable before it is due.
pub async fn retry_is_durable_and_counted<F: QueueFixture>(f: &F) {
    let user = f.funded_user(1).await;
    f.queue().place_order(&order(user, 1, 1)).await.expect("order");
    let w = WorkerId::new("w");
    let job = f.queue().claim(&w, 1).await.expect("claim").remove(0);
    let retry = Reschedule::Retry(failure(ErrorClass::Temporary, "HTTP 503"));
    f.queue().reschedule(job.lease, &retry, Duration::from_secs(3600)).await.expect("retry");
    let snap = f.queue().job(job.lease.job_id).await.expect("read").expect("exists");
    assert_eq!(snap.status, JobStatus::Queued);
    assert_eq!(snap.temporary_retries, 1);
    assert_eq!(snap.rate_limit_retries, 0);
    assert_eq!(snap.error_class, Some(ErrorClass::Temporary));
    assert!(snap.run_at > chrono::Utc::now() + chrono::Duration::minutes(50));
    assert!(f.queue().claim(&w, 1).await.expect("claim").is_empty(), "not due yet");

    f.make_due(job.lease.job_id).await;
    let again = f.queue().claim(&w, 1).await.expect("claim").remove(0);
    assert_eq!(again.temporary_retries, 1);
    assert_eq!(again.retries_of(ErrorClass::Temporary), 1);
    let rate = Reschedule::Retry(failure(ErrorClass::RateLimit, "429"));
    f.queue().reschedule(again.lease, &rate, Duration::ZERO).await.expect("retry");
    let third = f.queue().claim(&w, 1).await.expect("claim").remove(0);
    assert_eq!((third.temporary_retries, third.rate_limit_retries), (1, 1));
    assert_eq!(third.rescues, 0);
    assert_eq!(third.attempt, 3);
}

/// A snooze re-queues without touching retry counters or the last error.
pub async fn snooze_counts_nothing<F: QueueFixture>(f: &F) {
    let user = f.funded_user(1).await;
    f.queue().place_order(&order(user, 1, 1)).await.expect("order");
    let w = WorkerId::new("w");
    let job = f.queue().claim(&w, 1).await.expect("claim").remove(0);
    let snooze = Reschedule::Snooze { reason: "no key has a free slot".to_owned() };
    f.queue().reschedule(job.lease, &snooze, Duration::ZERO).await.expect("snooze");
    let again = f.queue().claim(&w, 1).await.expect("claim").remove(0);
    assert_eq!((again.temporary_retries, again.rate_limit_retries, again.rescues), (0, 0, 0));
    let snap = f.queue().job(again.lease.job_id).await.expect("read").expect("exists");
    assert_eq!(snap.error_class, None);
}

/// A failure refunds the job's price in the same call, once; a second attempt is refused.
pub async fn fail_refunds_exactly_once<F: QueueFixture>(f: &F) {
    let user = f.funded_user(6).await;
    f.queue().place_order(&order(user, 3, 2)).await.expect("order");
    let job = f.queue().claim(&WorkerId::new("w"), 1).await.expect("claim").remove(0);
    let fail = failure(ErrorClass::UserViolation, "content policy");
    let refund = f.queue().fail(job.lease, &fail).await.expect("fail");
    assert_eq!(refund.refunded, credits(2));
    assert_eq!(refund.balance_after, credits(2));
    let again = f.queue().fail(job.lease, &fail).await.expect_err("second fail refused");
    assert!(matches!(again, QueueError::LeaseLost(_)), "got {again:?}");
    assert_eq!(f.balance(user).await, credits(2));
    let snap = f.queue().job(job.lease.job_id).await.expect("read").expect("exists");
    assert_eq!(snap.status, JobStatus::Failed);
    assert!(snap.refunded);
    assert_eq!(snap.error_class, Some(ErrorClass::UserViolation));
    assert_eq!(snap.error_message.as_deref(), Some("content policy"));
    assert_eq!(snap.leased_by, None);
}

/// The model, aspect and length chosen for an order reach the worker with every job.
pub async fn chosen_format_reaches_the_worker<F: QueueFixture>(f: &F) {
    let user = f.funded_user(4).await;
    let mut chosen = order(user, 2, 2);
    chosen.spec.model = Some("kling-3.0/video".to_owned());
    chosen.spec.options = GenerationOptions { aspect: AspectRatio::Landscape, duration_secs: 5 };
    f.queue().place_order(&chosen).await.expect("order");
    let jobs = f.queue().claim(&WorkerId::new("w"), 2).await.expect("claim");
    assert_eq!(jobs.len(), 2);
    for job in jobs {
        assert_eq!(job.spec, chosen.spec);
    }
    assert_eq!(f.balance(user).await, credits(0), "charged the chosen price");
}

/// A queued job can be cancelled with refund; a running or finished one cannot; an unknown
/// one is not found.
pub async fn cancel_refunds_queued_jobs_only<F: QueueFixture>(f: &F) {
    let user = f.funded_user(2).await;
    let placed = f.queue().place_order(&order(user, 2, 1)).await.expect("order");
    let running = f.queue().claim(&WorkerId::new("w"), 1).await.expect("claim").remove(0);
    let queued = *placed.jobs.iter().find(|j| **j != running.lease.job_id).expect("other job");
    assert!(f.queue().cancel_job(queued).await.expect("cancel"));
    assert!(!f.queue().cancel_job(queued).await.expect("cancel again"));
    assert!(!f.queue().cancel_job(running.lease.job_id).await.expect("cancel running"));
    assert_eq!(f.balance(user).await, credits(1));
    let snap = f.queue().job(queued).await.expect("read").expect("exists");
    assert_eq!(snap.status, JobStatus::Cancelled);
    assert!(snap.refunded);
    assert!(matches!(f.queue().cancel_job(JobId(i64::MAX)).await, Err(QueueError::NotFound(_))));
}

/// Cancelling an order takes its jobs that have not started generating, refunds each once,
/// leaves running jobs and jobs whose paid generation began, and touches no other order or
/// user; an order of another user cancels nothing.
pub async fn cancel_queued_takes_only_unstarted_jobs_of_the_scope<F: QueueFixture>(f: &F) {
    let q = f.queue();
    let user = f.funded_user(20).await;
    let other = f.funded_user(5).await;
    let placed = q.place_order(&order(user, 4, 2)).await.expect("order");
    let second = q.place_order(&order(user, 1, 2)).await.expect("second order");
    let foreign = q.place_order(&order(other, 1, 1)).await.expect("other user's order");
    let w = WorkerId::new("w");
    // One job runs; another began generating (a task submitted) and waits for a retry.
    let (mut claimed, others): (Vec<_>, Vec<_>) =
        claim_all(q, &w).await.into_iter().partition(|j| j.order_id == placed.order_id);
    let (running, submitted) = (claimed.remove(0), claimed.remove(0));
    let task = ProviderTaskRef {
        task_id: "task-1".to_owned(),
        model: "m".to_owned(),
        key_id: "key-1".to_owned(),
        submitted_at: chrono::Utc::now(),
    };
    q.record_step(submitted.lease, &StepResult::Submitted { task }).await.expect("submitted");
    let retry = Reschedule::Retry(failure(ErrorClass::Temporary, "HTTP 503"));
    q.reschedule(submitted.lease, &retry, Duration::ZERO).await.expect("retry");
    // The rest go back to the queue unstarted.
    let back: Vec<_> = claimed.iter().chain(&others).map(|j| j.lease).collect();
    assert_eq!(back.len(), 4);
    q.release(&back).await.expect("release");

    let refused = CancelScope::Order { order: placed.order_id, user: other };
    let nothing = q.cancel_queued(refused).await.expect("another user's order");
    assert!(nothing.jobs.is_empty() && nothing.refunded == credits(0), "{nothing:?}");

    let scope = CancelScope::Order { order: placed.order_id, user };
    let cancelled = q.cancel_queued(scope).await.expect("cancel");
    assert_eq!(cancelled.jobs.len(), 2, "{cancelled:?}");
    assert!(!cancelled.jobs.contains(&running.lease.job_id));
    assert!(!cancelled.jobs.contains(&submitted.lease.job_id));
    assert_eq!(cancelled.refunded, credits(4));
    assert_eq!(cancelled.still_running, 2);
    assert_eq!(cancelled.balance_after, credits(20 - 10 + 4));
    assert_eq!(f.balance(user).await, credits(14));
    for job in &cancelled.jobs {
        let snap = q.job(*job).await.expect("read").expect("exists");
        assert_eq!(snap.status, JobStatus::Cancelled);
        assert!(snap.refunded);
    }
    let again = q.cancel_queued(scope).await.expect("cancel again");
    assert!(again.jobs.is_empty() && again.refunded == credits(0), "refunded once: {again:?}");
    assert_eq!(f.balance(user).await, credits(14));
    let snap = q.job(second.jobs[0]).await.expect("read").expect("exists");
    assert_eq!(snap.status, JobStatus::Queued, "another order of the user stays");
    let snap = q.job(foreign.jobs[0]).await.expect("read").expect("exists");
    assert_eq!(snap.status, JobStatus::Queued, "another user's order stays");

    // The whole user: the second order goes too; the other user is untouched.
    let all = q.cancel_queued(CancelScope::User(user)).await.expect("cancel the user's jobs");
    assert_eq!(all.jobs, second.jobs);
    assert_eq!(all.balance_after, credits(16));
    assert_eq!(f.balance(other).await, credits(4));
}

/// Cancels racing with claims: every job ends up either claimed or cancelled, never both and
/// never neither, and every cancelled job is refunded exactly once.
pub async fn cancel_queued_races_claims_without_double_outcomes<F: QueueFixture>(f: &F) {
    let q = f.queue();
    let users = 6;
    let mut orders = Vec::new();
    for _ in 0..users {
        let user = f.funded_user(30).await;
        let placed = q.place_order(&order(user, 5, 3)).await.expect("order");
        orders.push((user, placed));
    }
    let claimers = (0..3).map(|i| async move {
        let w = WorkerId::new(format!("w{i}"));
        let mut claimed = Vec::new();
        for _ in 0..20 {
            let batch = q.claim(&w, 2).await.expect("claim");
            claimed.extend(batch.into_iter().map(|j| j.lease.job_id));
            tokio::task::yield_now().await;
        }
        claimed
    });
    let cancels = orders.iter().map(|(user, placed)| async move {
        let scope = CancelScope::Order { order: placed.order_id, user: *user };
        let mut cancelled = Vec::new();
        for _ in 0..3 {
            cancelled.extend(q.cancel_queued(scope).await.expect("cancel").jobs);
            tokio::task::yield_now().await;
        }
        cancelled
    });
    let (claimed, cancelled) =
        tokio::join!(futures::future::join_all(claimers), futures::future::join_all(cancels));
    let claimed: HashSet<JobId> = claimed.into_iter().flatten().collect();
    let cancelled: Vec<JobId> = cancelled.into_iter().flatten().collect();
    let cancelled_set: HashSet<JobId> = cancelled.iter().copied().collect();
    assert_eq!(cancelled.len(), cancelled_set.len(), "each job cancelled once");
    assert!(claimed.is_disjoint(&cancelled_set), "a claimed job was cancelled");
    for (user, placed) in &orders {
        let mut cancelled_here = 0;
        for job in &placed.jobs {
            let snap = q.job(*job).await.expect("read").expect("exists");
            if cancelled_set.contains(job) {
                assert_eq!(snap.status, JobStatus::Cancelled);
                assert!(snap.refunded);
                cancelled_here += 1;
            } else {
                assert!(claimed.contains(job), "job {job} neither claimed nor cancelled");
                assert_eq!(snap.status, JobStatus::Running);
                assert!(!snap.refunded);
            }
        }
        assert_eq!(f.balance(*user).await, credits(30 - 15 + 3 * cancelled_here));
    }
}

/// A heartbeat extends the leases still held and reports the lost ones.
pub async fn heartbeat_extends_and_reports_lost<F: QueueFixture>(f: &F) {
    let user = f.funded_user(2).await;
    f.queue().place_order(&order(user, 2, 1)).await.expect("order");
    let w = WorkerId::new("w");
    let jobs = f.queue().claim(&w, 2).await.expect("claim");
    let (kept, lost) = (jobs[0].lease, jobs[1].lease);
    f.queue().release(&[lost]).await.expect("release");
    let reported = f.queue().heartbeat(&w, &[kept, lost]).await.expect("heartbeat");
    assert_eq!(reported, vec![lost.job_id]);
    let other = f.queue().heartbeat(&WorkerId::new("other"), &[kept]).await.expect("heartbeat");
    assert_eq!(other, vec![kept.job_id], "another worker cannot extend a lease it does not hold");
    // The kept lease expired and was extended again: it survives a rescue sweep.
    f.expire_lease(kept.job_id).await;
    assert!(f.queue().heartbeat(&w, &[kept]).await.expect("heartbeat").is_empty());
    assert!(f.queue().rescue_expired(10).await.expect("rescue").requeued.is_empty());
}

/// Expired leases go back to the queue (counted as rescues, not retries); a job blamed for its
/// worker's death (the worker's only job, with a step begun) is failed with refund on the
/// blamed rescue after the cap. The dead worker's late writes are refused.
pub async fn rescue_requeues_then_fails_at_cap<F: QueueFixture>(f: &F) {
    let user = f.funded_user(1).await;
    f.queue().place_order(&order(user, 1, 1)).await.expect("order");
    let mut last = None;
    for round in 0..=f.max_rescues() {
        let job = f.queue().claim(&WorkerId::new(format!("w{round}")), 1).await.expect("claim");
        let job = job.into_iter().next().expect("the rescued job is claimable again");
        assert_eq!(job.rescues, round);
        f.queue().begin_step(job.lease, JobStep::Submit).await.expect("begin step");
        f.expire_lease(job.lease.job_id).await;
        let report = f.queue().rescue_expired(10).await.expect("rescue");
        assert_eq!(report.blamed, vec![job.lease.job_id], "the worker's only job is blamed");
        if round < f.max_rescues() {
            assert_eq!(report.requeued, vec![job.lease.job_id]);
            assert!(report.failed.is_empty());
            f.make_due(job.lease.job_id).await;
        } else {
            assert_eq!(report.failed, vec![job.lease.job_id]);
            assert!(report.requeued.is_empty());
            assert!(report.past_deadline.is_empty(), "failed as a poison job, not for age");
        }
        let late = f.queue().complete(&[job.lease]).await.expect("late completion");
        assert!(late.is_empty(), "a rescued job's old lease completes nothing");
        last = Some(job.lease.job_id);
    }
    let id = last.expect("at least one round");
    let snap = f.queue().job(id).await.expect("read").expect("exists");
    assert_eq!(snap.status, JobStatus::Failed);
    assert!(snap.refunded);
    assert_eq!(snap.blamed_rescues, f.max_rescues() + 1);
    assert_eq!(snap.temporary_retries + snap.rate_limit_retries, 0);
    assert_eq!(f.balance(user).await, credits(1));
    assert!(f.queue().claim(&WorkerId::new("late"), 1).await.expect("claim").is_empty());
}

/// `begin_step` is fenced like every write: a stale token is refused and records nothing, a
/// missing job is not found; the current lease records the step, visible in the job.
pub async fn begin_step_is_fenced<F: QueueFixture>(f: &F) {
    let user = f.funded_user(1).await;
    f.queue().place_order(&order(user, 1, 1)).await.expect("order");
    let q = f.queue();
    let first = q.claim(&WorkerId::new("a"), 1).await.expect("claim").remove(0);
    assert_eq!(first.progress.entered_step, None, "a fresh job has begun no step");
    q.release(&[first.lease]).await.expect("release");
    let second = q.claim(&WorkerId::new("b"), 1).await.expect("claim").remove(0);

    let err = q.begin_step(first.lease, JobStep::Upload).await.expect_err("stale token");
    assert!(matches!(err, QueueError::LeaseLost(id) if id == first.lease.job_id), "got {err:?}");
    let snap = q.job(second.lease.job_id).await.expect("read").expect("exists");
    assert_eq!(snap.progress.entered_step, None, "a refused begin records nothing");

    q.begin_step(second.lease, JobStep::Upload).await.expect("current lease");
    q.begin_step(second.lease, JobStep::Prompt).await.expect("current lease");
    let snap = q.job(second.lease.job_id).await.expect("read").expect("exists");
    assert_eq!(snap.progress.entered_step, Some(JobStep::Prompt));

    let missing = Lease { job_id: JobId(i64::MAX), token: LeaseToken(1) };
    let err = q.begin_step(missing, JobStep::Upload).await.expect_err("missing job");
    assert!(matches!(err, QueueError::NotFound(_)), "got {err:?}");
    q.complete(&[second.lease]).await.expect("complete");
    let err = q.begin_step(second.lease, JobStep::Deliver).await.expect_err("finished job");
    assert!(matches!(err, QueueError::LeaseLost(_)), "got {err:?}");
}

/// The last step begun is the next worker's intent record: it survives release, rescue and
/// re-claim, and a new begin replaces it.
pub async fn entered_step_survives_reclaim<F: QueueFixture>(f: &F) {
    let user = f.funded_user(1).await;
    f.queue().place_order(&order(user, 1, 1)).await.expect("order");
    let q = f.queue();
    let job = q.claim(&WorkerId::new("a"), 1).await.expect("claim").remove(0);
    q.begin_step(job.lease, JobStep::Submit).await.expect("begin submit");
    q.release(&[job.lease]).await.expect("release");
    let again = q.claim(&WorkerId::new("b"), 1).await.expect("claim").remove(0);
    assert_eq!(again.progress.entered_step, Some(JobStep::Submit), "kept across a release");

    f.expire_lease(again.lease.job_id).await;
    q.rescue_expired(10).await.expect("rescue");
    let third = q.claim(&WorkerId::new("c"), 1).await.expect("claim").remove(0);
    assert_eq!(third.progress.entered_step, Some(JobStep::Submit), "kept across a rescue");
    q.begin_step(third.lease, JobStep::Wait).await.expect("begin wait");
    let snap = q.job(third.lease.job_id).await.expect("read").expect("exists");
    assert_eq!(snap.progress.entered_step, Some(JobStep::Wait));
}

/// `withdraw_intent` clears the named step's intent only, under the current lease only.
pub async fn withdraw_intent_clears_only_its_step<F: QueueFixture>(f: &F) {
    let user = f.funded_user(1).await;
    f.queue().place_order(&order(user, 1, 1)).await.expect("order");
    let q = f.queue();
    let first = q.claim(&WorkerId::new("a"), 1).await.expect("claim").remove(0);
    let id = first.lease.job_id;
    q.begin_step(first.lease, JobStep::Deliver).await.expect("begin deliver");
    q.withdraw_intent(first.lease, JobStep::Submit).await.expect("another step");
    let snap = q.job(id).await.expect("read").expect("exists");
    assert_eq!(snap.progress.entered_step, Some(JobStep::Deliver), "another step's intent stays");

    q.release(&[first.lease]).await.expect("release");
    let second = q.claim(&WorkerId::new("b"), 1).await.expect("claim").remove(0);
    let err = q.withdraw_intent(first.lease, JobStep::Deliver).await.expect_err("stale token");
    assert!(matches!(err, QueueError::LeaseLost(j) if j == id), "got {err:?}");
    let snap = q.job(id).await.expect("read").expect("exists");
    assert_eq!(snap.progress.entered_step, Some(JobStep::Deliver), "a stale lease changes nothing");

    q.withdraw_intent(second.lease, JobStep::Deliver).await.expect("current lease");
    let snap = q.job(id).await.expect("read").expect("exists");
    assert_eq!(snap.progress.entered_step, None, "withdrawn");
    q.release(&[second.lease]).await.expect("release");
    let third = q.claim(&WorkerId::new("c"), 1).await.expect("claim").remove(0);
    assert_eq!(third.progress.entered_step, None, "the next claim finds no intent");

    let missing = Lease { job_id: JobId(i64::MAX), token: LeaseToken(1) };
    let err = q.withdraw_intent(missing, JobStep::Deliver).await.expect_err("missing job");
    assert!(matches!(err, QueueError::NotFound(_)), "got {err:?}");
}

/// Claims `n` jobs of one fresh order each (one per user, so the fair order cannot interfere)
/// for `worker`, returned in the order given.
async fn hold_jobs<F: QueueFixture>(f: &F, worker: &WorkerId, n: usize) -> Vec<ClaimedJob> {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let user = f.funded_user(1).await;
        f.queue().place_order(&order(user, 1, 1)).await.expect("order");
        held.push(f.queue().claim(worker, 1).await.expect("claim").remove(0));
    }
    held
}

/// Claims every ready job and completes it, so that the next claims see only new jobs.
async fn drain<F: QueueFixture>(f: &F) {
    let leases: Vec<Lease> =
        claim_all(f.queue(), &WorkerId::new("drain")).await.iter().map(|j| j.lease).collect();
    f.queue().complete(&leases).await.expect("complete drained jobs");
}

/// A dead worker's death is blamed on the job on which it most recently began a step, and on
/// no other job: not on its other jobs, not on jobs of other workers, not on a job whose step
/// was begun under an earlier lease, and not twice when its leases expire across sweeps.
pub async fn rescue_blames_the_latest_begun_job_of_each_dead_worker<F: QueueFixture>(f: &F) {
    let q = f.queue();
    // w1: a (upload), b (upload), then a (prompt): a is the latest; c began nothing.
    let w1 = WorkerId::new("w1");
    let [a, b, c] = <[ClaimedJob; 3]>::try_from(hold_jobs(f, &w1, 3).await).expect("three");
    q.begin_step(a.lease, JobStep::Upload).await.expect("begin");
    q.begin_step(b.lease, JobStep::Upload).await.expect("begin");
    q.begin_step(a.lease, JobStep::Prompt).await.expect("begin");
    // w2, interleaved: d began last overall, but it is w2's death that d is blamed for.
    let w2 = WorkerId::new("w2");
    let [d, e] = <[ClaimedJob; 2]>::try_from(hold_jobs(f, &w2, 2).await).expect("two");
    q.begin_step(e.lease, JobStep::Wait).await.expect("begin");
    q.begin_step(d.lease, JobStep::Submit).await.expect("begin");
    // w3 died holding only jobs it began nothing on: nobody is blamed for it.
    let w3 = WorkerId::new("w3");
    let [g] = <[ClaimedJob; 1]>::try_from(hold_jobs(f, &w3, 1).await).expect("one");

    for job in [&a, &b, &c, &d, &e, &g] {
        f.expire_lease(job.lease.job_id).await;
    }
    let report = q.rescue_expired(100).await.expect("rescue");
    let mut blamed = report.blamed.clone();
    blamed.sort();
    let mut expected = vec![a.lease.job_id, d.lease.job_id];
    expected.sort();
    assert_eq!(blamed, expected, "one job per dead worker that began a step");
    assert_eq!(report.requeued.len(), 6);
    assert!(report.failed.is_empty());
    for (job, blames) in [(&a, 1), (&b, 0), (&c, 0), (&d, 1), (&e, 0), (&g, 0)] {
        let snap = q.job(job.lease.job_id).await.expect("read").expect("exists");
        assert_eq!(snap.status, JobStatus::Queued);
        assert_eq!((snap.rescues, snap.blamed_rescues), (1, blames), "job {}", job.lease.job_id);
    }

    // Steps begun under an earlier lease do not count for the next worker: w4 re-claims b
    // (which carries its old step) and a fresh job h, begins a step on h only, and dies.
    let w4 = WorkerId::new("w4");
    let all = claim_all(q, &w4).await;
    let b2 = all.iter().find(|j| j.lease.job_id == b.lease.job_id).expect("b claimed again");
    assert_eq!(b2.progress.entered_step, Some(JobStep::Upload));
    let others: Vec<Lease> =
        all.iter().filter(|j| j.lease.job_id != b.lease.job_id).map(|j| j.lease).collect();
    q.complete(&others).await.expect("complete the others");
    let [h] = <[ClaimedJob; 1]>::try_from(hold_jobs(f, &w4, 1).await).expect("one");
    q.begin_step(h.lease, JobStep::Upload).await.expect("begin");
    f.expire_lease(b.lease.job_id).await;
    f.expire_lease(h.lease.job_id).await;
    let report = q.rescue_expired(100).await.expect("rescue");
    assert_eq!(report.blamed, vec![h.lease.job_id]);
    drain(f).await;

    // Leases of one dead worker expiring across sweeps: its death is still blamed once.
    // w5: k began last; m expires (and is swept) first, k later.
    let w5 = WorkerId::new("w5");
    let [m, k] = <[ClaimedJob; 2]>::try_from(hold_jobs(f, &w5, 2).await).expect("two");
    q.begin_step(m.lease, JobStep::Upload).await.expect("begin");
    q.begin_step(k.lease, JobStep::Upload).await.expect("begin");
    f.expire_lease(m.lease.job_id).await;
    let first = q.rescue_expired(100).await.expect("rescue");
    assert_eq!(first.requeued, vec![m.lease.job_id]);
    assert!(first.blamed.is_empty(), "the worker's latest job has not expired yet");
    f.expire_lease(k.lease.job_id).await;
    let second = q.rescue_expired(100).await.expect("rescue");
    assert_eq!(second.blamed, vec![k.lease.job_id]);
    drain(f).await;
    // w6: n began last and expires first; p, expiring later, is then a bystander.
    let w6 = WorkerId::new("w6");
    let [p, n] = <[ClaimedJob; 2]>::try_from(hold_jobs(f, &w6, 2).await).expect("two");
    q.begin_step(p.lease, JobStep::Upload).await.expect("begin");
    q.begin_step(n.lease, JobStep::Upload).await.expect("begin");
    f.expire_lease(n.lease.job_id).await;
    let first = q.rescue_expired(100).await.expect("rescue");
    assert_eq!(first.blamed, vec![n.lease.job_id]);
    f.expire_lease(p.lease.job_id).await;
    let second = q.rescue_expired(100).await.expect("rescue");
    assert_eq!(second.requeued, vec![p.lease.job_id]);
    assert!(second.blamed.is_empty(), "the death was blamed already");
}

/// A worker that heartbeated after beginning a step was not killed by that step: its death is
/// blamed on no job, unless it began another step after the heartbeat.
pub async fn a_step_outlived_by_a_heartbeat_is_not_blamed<F: QueueFixture>(f: &F) {
    let q = f.queue();
    let w = WorkerId::new("w");
    let [a, b] = <[ClaimedJob; 2]>::try_from(hold_jobs(f, &w, 2).await).expect("two");
    q.begin_step(a.lease, JobStep::Wait).await.expect("begin");
    q.begin_step(b.lease, JobStep::Wait).await.expect("begin");
    assert!(q.heartbeat(&w, &[a.lease, b.lease]).await.expect("heartbeat").is_empty());
    f.expire_lease(a.lease.job_id).await;
    f.expire_lease(b.lease.job_id).await;
    let report = q.rescue_expired(10).await.expect("rescue");
    assert_eq!(report.requeued.len(), 2);
    assert!(report.blamed.is_empty(), "{report:?}");

    let v = WorkerId::new("v");
    let [c, d] = <[ClaimedJob; 2]>::try_from(hold_jobs(f, &v, 2).await).expect("two");
    q.begin_step(d.lease, JobStep::Wait).await.expect("begin");
    assert!(q.heartbeat(&v, &[c.lease, d.lease]).await.expect("heartbeat").is_empty());
    q.begin_step(c.lease, JobStep::Submit).await.expect("begin after the heartbeat");
    f.expire_lease(c.lease.job_id).await;
    f.expire_lease(d.lease.job_id).await;
    assert_eq!(q.rescue_expired(10).await.expect("rescue").blamed, vec![c.lease.job_id]);
}

/// A blamed job waits about a lease before it can be claimed again, so that it does not run
/// beside the same neighbours; the bystanders of the same death are ready at once.
pub async fn a_blamed_job_pauses_before_it_runs_again<F: QueueFixture>(f: &F) {
    let q = f.queue();
    let w = WorkerId::new("w");
    let [bystander, culprit] = <[ClaimedJob; 2]>::try_from(hold_jobs(f, &w, 2).await).expect("two");
    q.begin_step(bystander.lease, JobStep::Wait).await.expect("begin");
    q.begin_step(culprit.lease, JobStep::Submit).await.expect("begin");
    f.expire_lease(bystander.lease.job_id).await;
    f.expire_lease(culprit.lease.job_id).await;
    let report = q.rescue_expired(10).await.expect("rescue");
    assert_eq!(report.blamed, vec![culprit.lease.job_id]);
    let next = claim_all(q, &WorkerId::new("next")).await;
    let ids: Vec<JobId> = next.iter().map(|j| j.lease.job_id).collect();
    assert_eq!(ids, vec![bystander.lease.job_id], "only the bystander is ready");
    let snap = q.job(culprit.lease.job_id).await.expect("read").expect("exists");
    assert_eq!(snap.status, JobStatus::Queued);
    assert!(snap.run_at > chrono::Utc::now(), "the blamed job waits");
    f.make_due(culprit.lease.job_id).await;
    let later = q.claim(&WorkerId::new("later"), 1).await.expect("claim");
    assert_eq!(
        later.iter().map(|j| j.lease.job_id).collect::<Vec<_>>(),
        vec![culprit.lease.job_id]
    );
}

/// A sweep limited to one job at a time still blames a dead worker's death exactly once.
pub async fn sweeps_of_one_job_each_blame_a_death_once<F: QueueFixture>(f: &F) {
    let q = f.queue();
    let w = WorkerId::new("w");
    let held = hold_jobs(f, &w, 4).await;
    for job in &held {
        q.begin_step(job.lease, JobStep::Upload).await.expect("begin");
    }
    let latest = held[2].lease;
    q.begin_step(latest, JobStep::Prompt).await.expect("begin");
    for job in &held {
        f.expire_lease(job.lease.job_id).await;
    }
    let mut blamed = Vec::new();
    let mut rescued = 0;
    loop {
        let report = q.rescue_expired(1).await.expect("rescue");
        if report.requeued.is_empty() {
            break;
        }
        rescued += report.requeued.len();
        blamed.extend(report.blamed);
    }
    assert_eq!(rescued, 4);
    assert_eq!(blamed, vec![latest.job_id]);
}

/// Bystanders of a worker's death are rescued for free, any number of times: a job that is
/// never the one its worker began a step on last is never failed by the cap.
pub async fn bystanders_are_requeued_without_limit<F: QueueFixture>(f: &F) {
    let q = f.queue();
    let user = f.funded_user(1).await;
    let placed = q.place_order(&order(user, 1, 1)).await.expect("order");
    let bystander = placed.jobs[0];
    let rounds = f.max_rescues() + 3;
    for round in 0..rounds {
        let w = WorkerId::new(format!("w{round}"));
        let job = q.claim(&w, 1).await.expect("claim").remove(0);
        assert_eq!(job.lease.job_id, bystander);
        q.begin_step(job.lease, JobStep::Wait).await.expect("begin");
        // The worker then begins a step on another job, and dies.
        let [culprit] = <[ClaimedJob; 1]>::try_from(hold_jobs(f, &w, 1).await).expect("one");
        q.begin_step(culprit.lease, JobStep::Submit).await.expect("begin");
        f.expire_lease(bystander).await;
        f.expire_lease(culprit.lease.job_id).await;
        let report = q.rescue_expired(10).await.expect("rescue");
        assert_eq!(report.blamed, vec![culprit.lease.job_id]);
        assert!(report.requeued.contains(&bystander), "round {round}: {report:?}");
        assert!(report.failed.is_empty());
        assert!(q.cancel_job(culprit.lease.job_id).await.expect("cancel the culprit"));
    }
    let snap = q.job(bystander).await.expect("read").expect("exists");
    assert_eq!(snap.status, JobStatus::Queued);
    assert_eq!((snap.rescues, snap.blamed_rescues), (rounds, 0));
    assert!(!snap.refunded);
    assert_eq!(f.balance(user).await, Credits::ZERO);
}

/// A job past the job deadline is failed with refund by its next rescue, once, with a message
/// that says so; a job past the deadline whose worker is alive is left alone.
pub async fn rescue_fails_a_job_past_the_deadline_with_refund_once<F: QueueFixture>(f: &F) {
    let q = f.queue();
    let user = f.funded_user(2).await;
    q.place_order(&order(user, 2, 1)).await.expect("order");
    let jobs = q.claim(&WorkerId::new("w"), 2).await.expect("claim");
    let (old, alive) = (jobs[0].lease, jobs[1].lease);
    f.make_past_deadline(old.job_id).await;
    f.make_past_deadline(alive.job_id).await;
    f.expire_lease(old.job_id).await;

    let report = q.rescue_expired(10).await.expect("rescue");
    assert_eq!(report.failed, vec![old.job_id]);
    assert_eq!(report.past_deadline, vec![old.job_id]);
    assert!(report.requeued.is_empty());
    let snap = q.job(old.job_id).await.expect("read").expect("exists");
    assert_eq!(snap.status, JobStatus::Failed);
    assert!(snap.refunded);
    assert!(snap.error_class.is_some());
    let message = snap.error_message.unwrap_or_default();
    assert!(message.contains("deadline"), "{message}");
    assert_eq!(f.balance(user).await, credits(1));

    let again = q.rescue_expired(10).await.expect("rescue again");
    assert!(again.failed.is_empty() && again.requeued.is_empty());
    assert!(q.complete(&[old]).await.expect("late completion").is_empty());
    assert_eq!(f.balance(user).await, credits(1), "refunded once");
    let snap = q.job(alive.job_id).await.expect("read").expect("exists");
    assert_eq!(snap.status, JobStatus::Running, "only a rescue enforces the deadline");
}

/// A job whose delivery is recorded is never failed by a rescue, neither at the cap nor past
/// the deadline: the rescue completes it, without refund.
pub async fn a_delivered_job_is_never_failed_by_a_rescue<F: QueueFixture>(f: &F) {
    let q = f.queue();
    let user = f.funded_user(2).await;
    let delivery = Delivery::Sent { message_id: 5, file_id: Some("file-5".to_owned()) };

    // At the cap: blamed `max_rescues` times, then delivered, then its worker dies.
    let at_cap = q.place_order(&order(user, 1, 1)).await.expect("order").jobs[0];
    for round in 0..f.max_rescues() {
        let job = q.claim(&WorkerId::new(format!("w{round}")), 1).await.expect("claim").remove(0);
        assert_eq!(job.lease.job_id, at_cap);
        q.begin_step(job.lease, JobStep::Submit).await.expect("begin");
        f.expire_lease(at_cap).await;
        assert_eq!(q.rescue_expired(10).await.expect("rescue").blamed, vec![at_cap]);
        f.make_due(at_cap).await;
    }
    let job = q.claim(&WorkerId::new("last"), 1).await.expect("claim").remove(0);
    assert_eq!(job.lease.job_id, at_cap);
    q.begin_step(job.lease, JobStep::Deliver).await.expect("begin");
    q.record_step(job.lease, &StepResult::Delivered { delivery: delivery.clone() })
        .await
        .expect("delivered");
    f.expire_lease(at_cap).await;
    let report = q.rescue_expired(10).await.expect("rescue");
    assert_eq!(report.completed, vec![at_cap]);
    assert!(report.failed.is_empty() && report.requeued.is_empty());

    // Past the deadline, delivered, worker dead.
    let old = q.place_order(&order(user, 1, 1)).await.expect("order").jobs[0];
    let job = q.claim(&WorkerId::new("x"), 1).await.expect("claim").remove(0);
    assert_eq!(job.lease.job_id, old);
    q.begin_step(job.lease, JobStep::Deliver).await.expect("begin");
    q.record_step(job.lease, &StepResult::Delivered { delivery: delivery.clone() })
        .await
        .expect("delivered");
    f.make_past_deadline(old).await;
    f.expire_lease(old).await;
    let report = q.rescue_expired(10).await.expect("rescue");
    assert_eq!(report.completed, vec![old]);
    assert!(report.failed.is_empty() && report.past_deadline.is_empty());

    for id in [at_cap, old] {
        let snap = q.job(id).await.expect("read").expect("exists");
        assert_eq!(snap.status, JobStatus::Succeeded, "job {id}");
        assert!(!snap.refunded, "job {id}");
        assert_eq!(snap.progress.delivery, Some(delivery.clone()));
    }
    assert_eq!(f.balance(user).await, Credits::ZERO, "nothing refunded");
    assert!(q.rescue_expired(10).await.expect("rescue").completed.is_empty());
}

/// With one user holding many queued jobs and ten users holding one each, the ten are among
/// the first claims.
pub async fn claims_interleave_users<F: QueueFixture>(f: &F) {
    let heavy = f.funded_user(500).await;
    for _ in 0..5 {
        f.queue().place_order(&order(heavy, 100, 1)).await.expect("bulk order");
    }
    let mut light = HashSet::new();
    for _ in 0..10 {
        let user = f.funded_user(1).await;
        f.queue().place_order(&order(user, 1, 1)).await.expect("order");
        light.insert(user);
    }
    let first = f.queue().claim(&WorkerId::new("w"), 13).await.expect("claim");
    let claimed_light: HashSet<UserId> =
        first.iter().map(|j| j.user_id).filter(|u| light.contains(u)).collect();
    assert_eq!(claimed_light, light, "every light user is among the first 13 claims");
}

/// No user has more than the cap of jobs running; other users' jobs still run.
pub async fn per_user_cap_limits_jobs_in_flight<F: QueueFixture>(f: &F) {
    let cap = f.per_user_cap();
    let heavy = f.funded_user(i64::from(cap) * 3).await;
    f.queue().place_order(&order(heavy, cap * 3, 1)).await.expect("bulk order");
    let other = f.funded_user(1).await;
    f.queue().place_order(&order(other, 1, 1)).await.expect("order");
    let w = WorkerId::new("w");
    let claimed = claim_all(f.queue(), &w).await;
    let heavy_running = claimed.iter().filter(|j| j.user_id == heavy).count();
    assert_eq!(heavy_running, cap as usize);
    assert!(claimed.iter().any(|j| j.user_id == other));
    // Finishing one frees one slot.
    let one = claimed.iter().find(|j| j.user_id == heavy).expect("a heavy job").lease;
    f.queue().complete(&[one]).await.expect("complete");
    let next = f.queue().claim(&w, 10).await.expect("claim");
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].user_id, heavy);
}

/// Release hands jobs back at once, counted as neither a retry nor a rescue.
pub async fn release_requeues_without_counting<F: QueueFixture>(f: &F) {
    let user = f.funded_user(2).await;
    f.queue().place_order(&order(user, 2, 1)).await.expect("order");
    let w = WorkerId::new("w");
    let jobs = f.queue().claim(&w, 2).await.expect("claim");
    let leases: Vec<Lease> = jobs.iter().map(|j| j.lease).collect();
    assert_eq!(f.queue().release(&leases).await.expect("release"), 2);
    assert_eq!(f.queue().release(&leases).await.expect("release again"), 0);
    let again = f.queue().claim(&w, 2).await.expect("claim");
    assert_eq!(again.len(), 2);
    for j in again {
        assert_eq!((j.rescues, j.temporary_retries, j.rate_limit_retries), (0, 0, 0));
    }
}

/// Statistics count jobs by state and report waits.
pub async fn stats_count_by_state<F: QueueFixture>(f: &F) {
    let empty = f.queue().stats(Duration::from_secs(3600)).await.expect("stats");
    assert_eq!(empty.avg_queued_age_secs, 0.0, "nothing waits");
    let user = f.funded_user(5).await;
    f.queue().place_order(&order(user, 5, 1)).await.expect("order");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let w = WorkerId::new("w");
    let jobs = f.queue().claim(&w, 3).await.expect("claim");
    f.queue().complete(&[jobs[0].lease]).await.expect("complete");
    f.queue().fail(jobs[1].lease, &failure(ErrorClass::Config, "bad key")).await.expect("fail");
    let stats = f.queue().stats(Duration::from_secs(3600)).await.expect("stats");
    assert_eq!(stats.queued, 2);
    assert_eq!(stats.ready, 2);
    assert_eq!(stats.running, 1);
    assert_eq!(stats.succeeded, 1);
    assert_eq!(stats.failed, 1);
    assert_eq!(stats.failed_by_class, vec![(ErrorClass::Config, 1)]);
    assert_eq!(stats.workers, 1);
    assert!(stats.avg_wait_secs >= 0.0 && stats.p95_wait_secs >= stats.avg_wait_secs * 0.0);
    let age = stats.avg_queued_age_secs;
    assert!((0.15..60.0).contains(&age), "the two waiting jobs are about 0.2 s old: {age}");
}

/// A waiting worker wakes up when an order is placed, well before its polling timeout.
pub async fn new_order_wakes_waiting_worker<F: QueueFixture>(f: &F) {
    let user = f.funded_user(1).await;
    // The first wait starts the listener; give it a moment to subscribe.
    f.queue().wait_for_work(Duration::from_millis(300)).await.expect("wait");
    let q = f.queue();
    let waiter = q.wait_for_work(Duration::from_secs(60));
    let placer = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        q.place_order(&order(user, 1, 1)).await.expect("order");
    };
    let woke = tokio::time::timeout(Duration::from_secs(20), async {
        let (w, ()) = tokio::join!(waiter, placer);
        w
    })
    .await;
    assert!(woke.is_ok(), "the waiter must wake on the notification, not on its 60 s timeout");
}

/// Work that arrives between a worker's empty claim and its wait still wakes it at once.
pub async fn work_arriving_before_the_wait_is_not_missed<F: QueueFixture>(f: &F) {
    let user = f.funded_user(1).await;
    let q = f.queue();
    q.wait_for_work(Duration::from_millis(300)).await.expect("start listening");
    assert!(q.claim(&WorkerId::new("w"), 1).await.expect("claim").is_empty());
    q.place_order(&order(user, 1, 1)).await.expect("order");
    // The notification lands while nobody is waiting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let woke =
        tokio::time::timeout(Duration::from_secs(20), q.wait_for_work(Duration::from_secs(60)))
            .await;
    assert!(woke.is_ok(), "the wait must return at once, not after its 60 s timeout");
    assert_eq!(q.claim(&WorkerId::new("w"), 1).await.expect("claim").len(), 1);
}

/// The ids of `user`'s jobs that `filter` lists (newest first), at most `limit` of all jobs.
async fn listed<Q: JobQueue>(q: &Q, user: UserId, filter: JobFilter, limit: u32) -> Vec<JobId> {
    q.list_jobs(filter, limit)
        .await
        .expect("list jobs")
        .into_iter()
        .filter(|j| j.user_id == user)
        .map(|j| j.id)
        .collect()
}

/// Listing jobs selects by state (and "retrying": waiting again after a run), newest first,
/// at most `limit`, with the same snapshot as a single read.
pub async fn list_jobs_by_state_newest_first<F: QueueFixture>(f: &F) {
    let q = f.queue();
    let user = f.funded_user(10).await;
    let first = q.place_order(&order(user, 2, 1)).await.expect("first order");
    let second = q.place_order(&order(user, 1, 1)).await.expect("second order");
    let mut all: Vec<JobId> = first.jobs.iter().chain(&second.jobs).copied().collect();
    all.sort_unstable_by(|a, b| b.cmp(a));

    assert_eq!(listed(q, user, JobFilter::Any, 100).await, all);
    let newest = listed(q, user, JobFilter::Any, 1).await;
    assert_eq!(newest, vec![all[0]], "the limit keeps the newest");

    let w = WorkerId::new("w");
    let running = q.claim(&w, 1).await.expect("claim").remove(0);
    let running_id = running.lease.job_id;
    let queued: Vec<JobId> = all.iter().copied().filter(|j| *j != running_id).collect();
    assert_eq!(listed(q, user, JobFilter::Status(JobStatus::Running), 100).await, vec![running_id]);
    assert_eq!(listed(q, user, JobFilter::Status(JobStatus::Queued), 100).await, queued);
    assert!(listed(q, user, JobFilter::Retrying, 100).await.is_empty(), "none ran yet");

    let snooze = Reschedule::Snooze { reason: "no key has a free slot".to_owned() };
    q.reschedule(running.lease, &snooze, Duration::from_secs(60)).await.expect("snooze");
    assert_eq!(listed(q, user, JobFilter::Retrying, 100).await, vec![running_id]);
    assert!(listed(q, user, JobFilter::Status(JobStatus::Running), 100).await.is_empty());
    assert!(listed(q, user, JobFilter::Status(JobStatus::Failed), 100).await.is_empty());

    let snapshots = q.list_jobs(JobFilter::Retrying, 100).await.expect("list");
    let snap = snapshots.into_iter().find(|j| j.id == running_id).expect("listed");
    let single = q.job(running_id).await.expect("read").expect("exists");
    assert_eq!(snap, single, "a listed job reads as the job itself");
}

/// Cancelling one job takes that job only, when it has not started, with its refund; a running
/// job is left (counted as still running); an unknown job is not found.
pub async fn cancel_queued_job_scope_takes_one_job<F: QueueFixture>(f: &F) {
    let q = f.queue();
    let user = f.funded_user(10).await;
    let placed = q.place_order(&order(user, 3, 2)).await.expect("order");
    assert_eq!(f.balance(user).await, credits(4));
    let w = WorkerId::new("w");
    let running = q.claim(&w, 1).await.expect("claim").remove(0).lease.job_id;
    let waiting: Vec<JobId> = placed.jobs.iter().copied().filter(|j| *j != running).collect();

    let cancelled = q.cancel_queued(CancelScope::Job(waiting[0])).await.expect("cancel one job");
    assert_eq!(cancelled.jobs, vec![waiting[0]]);
    assert_eq!(cancelled.refunded, credits(2));
    assert_eq!(cancelled.balance_after, credits(6));
    assert_eq!(cancelled.still_running, 0);
    let snap = q.job(waiting[0]).await.expect("read").expect("exists");
    assert_eq!(snap.status, JobStatus::Cancelled);
    assert!(snap.refunded);
    let other = q.job(waiting[1]).await.expect("read").expect("exists");
    assert_eq!(other.status, JobStatus::Queued, "the order's other job stays");

    let again = q.cancel_queued(CancelScope::Job(waiting[0])).await.expect("cancel again");
    assert!(again.jobs.is_empty());
    assert_eq!(again.refunded, Credits::ZERO);
    let busy = q.cancel_queued(CancelScope::Job(running)).await.expect("cancel running");
    assert!(busy.jobs.is_empty());
    assert_eq!(busy.still_running, 1);
    assert_eq!(f.balance(user).await, credits(6), "refunded once");

    let unknown = q.cancel_queued(CancelScope::Job(JobId(i64::MAX))).await;
    assert!(matches!(unknown, Err(QueueError::NotFound(_))), "got {unknown:?}");
}

/// Retrying a failed job queues a new job with the same spec, charged again in the same
/// transaction; the failed job keeps its one refund; a second retry charges nothing; the new
/// job has its own refund if it fails too; other states, unknown jobs and a balance that does
/// not cover the price write nothing.
pub async fn retry_failed_charges_a_new_job_once<F: QueueFixture>(f: &F) {
    let q = f.queue();
    let user = f.funded_user(5).await;
    let mut placed_order = order(user, 1, 2);
    placed_order.spec.model = Some("kling-3.0/video".to_owned());
    let placed = q.place_order(&placed_order).await.expect("order");
    let failed = placed.jobs[0];
    let w = WorkerId::new("w");
    let job = q.claim(&w, 1).await.expect("claim").remove(0);
    q.fail(job.lease, &failure(ErrorClass::Temporary, "provider down")).await.expect("fail");
    assert_eq!(f.balance(user).await, credits(5), "refunded");

    let outcome = q.retry_failed(failed).await.expect("retry");
    let RetryOutcome::Queued { order_id, job: retried, charged, balance_after } = outcome else {
        panic!("expected a queued retry, got {outcome:?}");
    };
    assert_ne!(retried, failed);
    assert_ne!(order_id, placed.order_id);
    assert_eq!(charged, credits(2));
    assert_eq!(balance_after, credits(3));
    assert_eq!(f.balance(user).await, credits(3));
    let new = q.job(retried).await.expect("read").expect("exists");
    assert_eq!(new.status, JobStatus::Queued);
    assert_eq!(new.user_id, user);
    assert_eq!(new.spec, placed_order.spec, "the same video is asked for");
    assert!(!new.refunded);
    let old = q.job(failed).await.expect("read").expect("exists");
    assert_eq!(old.status, JobStatus::Failed, "the failed job stays failed");
    assert!(old.refunded);

    let again = q.retry_failed(failed).await.expect("retry again");
    assert_eq!(again, RetryOutcome::AlreadyRetried { order_id, job: retried });
    assert_eq!(f.balance(user).await, credits(3), "a second retry charges nothing");
    assert_eq!(
        q.retry_failed(retried).await.expect("retry a queued job"),
        RetryOutcome::NotFailed(JobStatus::Queued)
    );
    assert_eq!(q.retry_failed(JobId(i64::MAX)).await.expect("unknown"), RetryOutcome::NotFound);

    // The retry fails too: it has its own refund.
    let claimed = q.claim(&w, 1).await.expect("claim the retry").remove(0);
    assert_eq!(claimed.lease.job_id, retried);
    let refund =
        q.fail(claimed.lease, &failure(ErrorClass::Temporary, "down again")).await.expect("fail");
    assert_eq!(refund.refunded, credits(2));
    assert_eq!(f.balance(user).await, credits(5));

    // A balance that does not cover the price: refused, nothing written.
    q.place_order(&order(user, 1, 5)).await.expect("spend the balance");
    let err = q.retry_failed(retried).await.expect_err("refused");
    match err {
        QueueError::InsufficientCredits { needed, available } => {
            assert_eq!(needed, credits(2));
            assert_eq!(available, credits(0));
        }
        other => panic!("expected InsufficientCredits, got {other:?}"),
    }
    assert_eq!(f.balance(user).await, credits(0));
    assert_eq!(listed(q, user, JobFilter::Any, 100).await.len(), 3, "no job was added");
}
