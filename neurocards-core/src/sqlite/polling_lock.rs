//! "Only one process polls Telegram for a data directory": an exclusive OS file lock on
//! `<store file>.lock`, next to the database. The operating system releases it when the
//! holder's file closes — on drop, or when the process dies — so a standby can take over.

use super::SqliteStore;
use std::fs::{File, OpenOptions, TryLockError};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The held polling lock of one store. Dropping it releases the lock.
#[derive(Debug)]
pub struct FilePollingLock {
    file: File,
    path: PathBuf,
}

impl FilePollingLock {
    /// Takes the lock if it is free; `None` when another holder (another process, or another
    /// lock value in this one) has it. An error means the lock file could not be opened or
    /// locked at all (permissions, a file system without locks).
    pub fn try_acquire(store: &SqliteStore) -> std::io::Result<Option<Self>> {
        let path = lock_path(store.path());
        let file = OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Self { file, path })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }

    /// Waits for the lock, trying every `retry_every`; `None` when `stop` completes first. Errors
    /// while waiting are logged and retried.
    pub async fn acquire(
        store: &SqliteStore,
        retry_every: Duration,
        stop: impl Future<Output = ()>,
    ) -> Option<Self> {
        tokio::pin!(stop);
        let mut announced = false;
        loop {
            match Self::try_acquire(store) {
                Ok(Some(lock)) => return Some(lock),
                Ok(None) if !announced => {
                    tracing::info!("another process is polling Telegram; standing by");
                    announced = true;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "polling lock unavailable; retrying"),
            }
            tokio::select! {
                _ = &mut stop => return None,
                _ = tokio::time::sleep(retry_every) => {}
            }
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for FilePollingLock {
    fn drop(&mut self) {
        // Closing the file releases the lock too; unlocking first makes it explicit.
        let _ = self.file.unlock();
    }
}

/// `<store file>.lock`, beside the store's file.
fn lock_path(store_file: &Path) -> PathBuf {
    let mut name = store_file.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_until_dropped() {
        let dir = std::env::temp_dir().join(format!("nc-poll-{}", uuid::Uuid::new_v4()));
        let store = SqliteStore::open_in(&dir).await.expect("open");
        let first = FilePollingLock::try_acquire(&store).expect("lockable").expect("free lock");
        assert_eq!(first.path(), dir.join("neurocards.db.lock"));
        assert!(FilePollingLock::try_acquire(&store).expect("lockable").is_none(), "held");
        drop(first);
        let second = FilePollingLock::try_acquire(&store).expect("lockable");
        assert!(second.is_some(), "free again after drop");
        assert!(FilePollingLock::try_acquire(&store).expect("lockable").is_none(), "held once");
        drop(second);
        let waited =
            FilePollingLock::acquire(&store, Duration::from_millis(10), std::future::pending())
                .await;
        assert!(waited.is_some(), "acquire takes a free lock");
        let stopped = FilePollingLock::acquire(&store, Duration::from_millis(10), async {}).await;
        assert!(stopped.is_none(), "a held lock is waited for until stop");
        drop(waited);
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
