//! Wake-ups: one `LISTEN` connection per queue, shared by every waiting task through a
//! [`Notify`]. The caller's timeout is the polling fallback, so a lost notification (or a
//! listener that cannot connect) only delays work, never strands it. After a lost connection
//! (a server restart) it reconnects every second until the server answers, and wakes every
//! waiter once it listens again, since notifications sent meanwhile are lost.

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub(super) struct Listener {
    pool: PgPool,
    channel: String,
    notify: Arc<Notify>,
    epoch: Arc<AtomicU64>,
    seen: AtomicU64,
    task: Mutex<Option<AbortHandle>>,
}

impl Listener {
    pub(super) fn new(pool: PgPool, channel: String) -> Self {
        Self {
            pool,
            channel,
            notify: Arc::new(Notify::new()),
            epoch: Arc::new(AtomicU64::new(0)),
            seen: AtomicU64::new(0),
            task: Mutex::new(None),
        }
    }

    /// Called when a claim starts: notifications up to now are covered by that claim.
    pub(super) fn claim_started(&self) {
        self.seen.store(self.epoch.load(Ordering::Acquire), Ordering::Release);
    }

    /// Returns on the next notification (or at once if one came since the last claim started)
    /// or after `timeout`.
    pub(super) async fn wait(&self, timeout: Duration) {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        // Registered before the check, so a notification between the check and the await
        // still wakes this task.
        notified.as_mut().enable();
        self.ensure_started();
        if self.epoch.load(Ordering::Acquire) != self.seen.load(Ordering::Acquire) {
            self.seen.store(self.epoch.load(Ordering::Acquire), Ordering::Release);
            return;
        }
        let _ = tokio::time::timeout(timeout, notified).await;
    }

    fn ensure_started(&self) {
        // A poisoned lock only means another waiter panicked mid-start; the slot is still usable.
        let mut task = self.task.lock().unwrap_or_else(|p| p.into_inner());
        if task.is_none() {
            let handle = tokio::spawn(listen(
                self.pool.clone(),
                self.channel.clone(),
                self.notify.clone(),
                self.epoch.clone(),
            ));
            *task = Some(handle.abort_handle());
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(task) = self.task.get_mut().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
    }
}

async fn listen(pool: PgPool, channel: String, notify: Arc<Notify>, epoch: Arc<AtomicU64>) {
    let wake = || {
        epoch.fetch_add(1, Ordering::AcqRel);
        notify.notify_waiters();
    };
    loop {
        match PgListener::connect_with(&pool).await {
            Ok(mut listener) => {
                // A lost connection ends this session instead of sqlx reconnecting inside
                // `try_recv`: the pool is swept of the connections the server dropped with it,
                // and waiters are woken once the new connection listens, not before.
                listener.eager_reconnect(false);
                match listener.listen(&channel).await {
                    Ok(()) => {
                        // Anything sent while we were not listening is lost: let waiters look.
                        wake();
                        loop {
                            match listener.try_recv().await {
                                Ok(Some(_)) => wake(),
                                Ok(None) => {
                                    tracing::warn!(
                                        "queue listener lost its connection; reconnecting"
                                    );
                                    break;
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "queue listener failed; reconnecting");
                                    break;
                                }
                            }
                        }
                        // The server dropped us, most likely every other connection too.
                        crate::postgres::discard_dead_idle(&pool).await;
                    }
                    Err(e) => tracing::warn!(error = %e, "queue listener cannot LISTEN; retrying"),
                }
            }
            Err(e) => tracing::warn!(error = %e, "queue listener cannot connect; retrying"),
        }
        tokio::time::sleep(RECONNECT_PAUSE).await;
    }
}
