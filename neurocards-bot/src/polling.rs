//! Polling Telegram while holding the polling lock, through database restarts.
//!
//! One cycle: take the lock (standing by while another process holds it), delete any webhook,
//! run the dispatcher, and check every [`LOCK_CHECK`] that the lock's connection is alive. A
//! lost lock (the database restarted or failed over, and the lock went with its connection)
//! stops the dispatcher — updates already received are finished and confirmed to Telegram, the
//! rest stay pending there — sweeps the pool of the connections the server dropped, and starts
//! the next cycle. `/readyz` says "not ready" from the loss until polling resumes.
//!
//! Shutdown stops the long poll in flight at once and gives the updates being handled
//! [`STOP_BOUND`] to finish; an idle bot stops in milliseconds even when Telegram is slow to
//! answer.

use crate::polling_lock::{self, HeldLock, PollingLocks};
use neurocards_core::conversation::{self, BotContext, DialogueStorage, ALLOWED_UPDATES};
use neurocards_core::web::ServingStatus;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use teloxide::prelude::*;
use teloxide::update_listeners::{Polling, UpdateListener as _};

/// How long a long-poll waits at Telegram; the HTTP client's timeout is well above it.
pub(crate) const POLL_TIMEOUT: Duration = Duration::from_secs(25);
/// How often the lock's connection is checked while polling: the longest a poller can go on
/// after losing the lock (another process may take it meanwhile).
const LOCK_CHECK: Duration = Duration::from_secs(1);
/// How often a standby tries to take the lock.
const LOCK_RETRY: Duration = Duration::from_secs(5);
/// Pause before taking the lock again after a lost one (a restarting server refuses
/// connections for a while anyway).
const AFTER_LOSS: Duration = Duration::from_secs(1);
/// Pause before the next cycle after Telegram refused to start polling (bad token, no network).
const AFTER_TELEGRAM_ERROR: Duration = Duration::from_secs(5);
/// How long updates being handled get to finish when polling stops, before they are dropped
/// (Telegram then delivers them again to the next poller).
pub(crate) const STOP_BOUND: Duration = Duration::from_secs(3);

/// What a polling process needs.
pub(crate) struct Poller {
    pub bot: Bot,
    pub ctx: Arc<BotContext>,
    pub storage: Arc<DialogueStorage>,
    pub locks: Arc<dyn PollingLocks>,
    pub serving: ServingStatus,
}

/// Why a cycle ended.
enum CycleEnd {
    Shutdown,
    LockLost,
    /// Telegram refused to start (deleteWebhook or getMe failed), or the listener ended.
    Telegram(String),
}

impl Poller {
    /// Polls until `stopped()` completes, through lost locks and failed starts.
    pub(crate) async fn run<F, Fut>(self, stopped: F)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        loop {
            self.serving.not_serving("waiting for the polling lock");
            let Some(lock) = polling_lock::acquire(&*self.locks, LOCK_RETRY, stopped()).await
            else {
                return;
            };
            tracing::info!("polling lock acquired");
            let pause = match self.cycle(lock, &stopped).await {
                CycleEnd::Shutdown => return,
                CycleEnd::LockLost => {
                    tracing::warn!(
                        "polling lock lost (database restarted or unreachable); polling stopped \
                         until it is taken again"
                    );
                    self.serving.not_serving("polling lock lost; taking it again");
                    self.locks.after_loss().await;
                    AFTER_LOSS
                }
                CycleEnd::Telegram(e) => {
                    tracing::error!(error = %e, "Telegram refused to start polling; retrying");
                    self.serving.not_serving("Telegram refused to start polling");
                    AFTER_TELEGRAM_ERROR
                }
            };
            tokio::select! {
                () = stopped() => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// One cycle with the lock held; the lock is released when it returns.
    async fn cycle<F, Fut>(&self, mut lock: Box<dyn HeldLock>, stopped: &F) -> CycleEnd
    where
        F: Fn() -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        // getUpdates is refused while a webhook is set; pending updates are not dropped.
        let deleted = tokio::select! {
            () = stopped() => None,
            r = self.bot.delete_webhook() => Some(r),
        };
        match deleted {
            None => {
                lock.release().await;
                return CycleEnd::Shutdown;
            }
            Some(Err(e)) => {
                lock.release().await;
                return CycleEnd::Telegram(format!("deleteWebhook: {e}"));
            }
            Some(Ok(_)) => {}
        }

        let mut dispatcher =
            conversation::dispatcher(self.bot.clone(), self.ctx.clone(), self.storage.clone());
        let mut listener = Polling::builder(self.bot.clone())
            .timeout(POLL_TIMEOUT)
            .allowed_updates(ALLOWED_UPDATES.to_vec())
            .build();
        // The listener's own stop token, taken before the dispatcher owns it: stopping it drops
        // the long poll in flight at once and ends the stream, whatever the dispatcher is doing
        // at that moment (the dispatcher's shutdown token can miss a request made while it is
        // busy with an update, and it would wait for the long poll to come back).
        let stop_polling = listener.stop_token();
        let mut dispatch = tokio::spawn(async move {
            dispatcher
                .try_dispatch_with_listener(
                    listener,
                    teloxide::error_handlers::LoggingErrorHandler::with_custom_text(
                        "getUpdates failed",
                    ),
                )
                .await
        });
        self.serving.serving();
        tracing::info!("polling Telegram");

        let stop = stopped();
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(LOCK_CHECK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let end = loop {
            tokio::select! {
                () = &mut stop => break CycleEnd::Shutdown,
                done = &mut dispatch => {
                    lock.release().await;
                    return CycleEnd::Telegram(match done {
                        Ok(Ok(())) => "the update listener ended".to_owned(),
                        Ok(Err(e)) => format!("getMe: {e}"),
                        Err(e) => format!("the dispatcher task failed: {e}"),
                    });
                }
                _ = tick.tick() => {
                    let held = tokio::select! {
                        () = &mut stop => break CycleEnd::Shutdown,
                        held = lock.is_held() => held,
                    };
                    if !held {
                        break CycleEnd::LockLost;
                    }
                }
            }
        };
        self.serving.not_serving(match end {
            CycleEnd::LockLost => "polling lock lost",
            _ => "shutting down",
        });
        stop_polling.stop();
        if tokio::time::timeout(STOP_BOUND, &mut dispatch).await.is_err() {
            tracing::warn!(
                bound = ?STOP_BOUND,
                "updates still being handled when polling stopped; Telegram will deliver them again"
            );
            dispatch.abort();
        }
        lock.release().await;
        end
    }
}
