//! Which job tasks have made a call that costs money or reaches the user — `createTask`
//! ([`VideoProvider::submit`]) and `sendVideo` ([`Notifier::send_video`], or the offer sent in
//! its place, [`Notifier::offer_video`]). Shutdown never aborts
//! such a task: cut off mid-call, or before the job recorded the call's result, the provider
//! or Telegram may have acted while the job's next claim finds nothing recorded and makes the
//! call again (a second paid task, a second video). The task is left to finish instead; the
//! calls are bounded by their own HTTP timeouts, and the job stops at its next recorded point.
//!
//! Each job task runs with a [`SideEffects`] marker in a task-local; the pipeline wraps its
//! provider and notifier ([`wrap_provider`], [`wrap_notifier`]) so that those two calls set it.
//! Once set it stays set for the rest of the claim, which covers the write that records the
//! result right after the call.

use crate::domain::{ImageData, ProviderTaskRef};
use crate::ports::{
    CallbackError, CallbackHeaders, FailureNotice, GenerationRequest, MessageRef, Notifier,
    NotifyError, ProgressStage, ProviderError, Recipient, SentVideo, TaskState, VideoMessage,
    VideoProvider,
};
use std::future::Future;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

const NONE: u8 = 0;
const IN_CALL: u8 = 1;
const CALLED: u8 = 2;

tokio::task_local! {
    static CURRENT: SideEffects;
}

/// One job task's marker: whether it is inside, or past, a side-effect call in this claim.
#[derive(Debug, Clone, Default)]
pub(crate) struct SideEffects(Arc<AtomicU8>);

impl SideEffects {
    /// Runs `job` with this marker as the task's current one.
    pub(crate) fn scope<F: Future>(&self, job: F) -> impl Future<Output = F::Output> {
        CURRENT.scope(self.clone(), job)
    }

    /// Whether aborting the task now could repeat a side effect on its next claim.
    pub(crate) fn must_not_abort(&self) -> bool {
        self.0.load(Ordering::Acquire) != NONE
    }

    /// Whether the task is inside a side-effect call right now.
    pub(crate) fn in_call(&self) -> bool {
        self.0.load(Ordering::Acquire) == IN_CALL
    }
}

/// Marks the current task for the duration of one side-effect call (no-op outside a job task).
struct InCall(Option<SideEffects>);

impl InCall {
    fn enter() -> Self {
        let current = CURRENT.try_with(SideEffects::clone).ok();
        if let Some(s) = &current {
            s.0.store(IN_CALL, Ordering::Release);
        }
        Self(current)
    }
}

impl Drop for InCall {
    fn drop(&mut self) {
        if let Some(s) = &self.0 {
            s.0.store(CALLED, Ordering::Release);
        }
    }
}

/// `provider` with `submit` marking the calling job task.
pub(crate) fn wrap_provider(provider: Arc<dyn VideoProvider>) -> Arc<dyn VideoProvider> {
    Arc::new(MarkedProvider(provider))
}

/// `notifier` with `send_video` marking the calling job task.
pub(crate) fn wrap_notifier(notifier: Arc<dyn Notifier>) -> Arc<dyn Notifier> {
    Arc::new(MarkedNotifier(notifier))
}

struct MarkedProvider(Arc<dyn VideoProvider>);

#[async_trait::async_trait]
impl VideoProvider for MarkedProvider {
    async fn upload_image(
        &self,
        image: &ImageData,
        file_stem: &str,
    ) -> Result<String, ProviderError> {
        self.0.upload_image(image, file_stem).await
    }

    async fn submit(&self, request: &GenerationRequest) -> Result<ProviderTaskRef, ProviderError> {
        let _marked = InCall::enter();
        self.0.submit(request).await
    }

    async fn check(&self, task: &ProviderTaskRef) -> Result<TaskState, ProviderError> {
        self.0.check(task).await
    }

    fn callback_task_id(
        &self,
        headers: &CallbackHeaders,
        body: &[u8],
    ) -> Result<String, CallbackError> {
        self.0.callback_task_id(headers, body)
    }
}

struct MarkedNotifier(Arc<dyn Notifier>);

#[async_trait::async_trait]
impl Notifier for MarkedNotifier {
    async fn show_progress(
        &self,
        to: Recipient,
        existing: Option<MessageRef>,
        stage: &ProgressStage,
    ) -> Result<MessageRef, NotifyError> {
        self.0.show_progress(to, existing, stage).await
    }

    async fn send_video(
        &self,
        to: Recipient,
        video: &VideoMessage,
    ) -> Result<SentVideo, NotifyError> {
        let _marked = InCall::enter();
        self.0.send_video(to, video).await
    }

    async fn offer_video(
        &self,
        to: Recipient,
        video: &VideoMessage,
    ) -> Result<MessageRef, NotifyError> {
        let _marked = InCall::enter();
        self.0.offer_video(to, video).await
    }

    async fn send_failure(
        &self,
        to: Recipient,
        notice: &FailureNotice,
    ) -> Result<MessageRef, NotifyError> {
        self.0.send_failure(to, notice).await
    }

    async fn chat_action(&self, to: Recipient) -> Result<(), NotifyError> {
        self.0.chat_action(to).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::MockNotifier;

    #[tokio::test]
    async fn send_video_marks_the_calling_task_for_good_and_nothing_else_does() {
        let mut mock = MockNotifier::new();
        mock.expect_chat_action().returning(|_| Ok(()));
        mock.expect_send_video().returning(|_, _| Err(NotifyError::Temporary("down".into())));
        let notifier = wrap_notifier(Arc::new(mock));
        let to =
            Recipient { user_id: crate::domain::UserId(1), language: crate::domain::Language::En };
        let marker = SideEffects::default();
        let n = notifier.clone();
        marker
            .scope(async move {
                n.chat_action(to).await.expect("chat action");
            })
            .await;
        assert!(!marker.must_not_abort(), "a chat action is no side effect");

        let video = VideoMessage {
            video_url: "https://example.com/v.mp4".to_owned(),
            order_id: crate::domain::OrderId(1),
            job_id: crate::domain::JobId(1),
            product_id: None,
            index: 0,
            total: 1,
        };
        let n = notifier.clone();
        marker
            .scope(async move {
                let _ = n.send_video(to, &video).await;
            })
            .await;
        assert!(marker.must_not_abort(), "past sendVideo, even a failed one");
        assert!(!marker.in_call());

        // Outside a job task the wrapper is transparent.
        let _ = notifier.chat_action(to).await;
    }
}
