//! A `Slot`: where every handle finds the current instance of a restartable actor.
//!
//! Handles (`SocketRegistry`, `Presence`, `PubSub`, the socket supervisor in `RuntimeShared`) are
//! cloned all over the server before any restart; they hold a shared slot instead of the actor
//! itself, and a restart puts the new instance in it. Reading costs one uncontended read lock.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// The current instance of a restartable actor (shared by every clone).
pub(crate) struct Slot<T> {
    current: Arc<watch::Sender<T>>,
}

impl<T> Clone for Slot<T> {
    fn clone(&self) -> Self {
        Self {
            current: self.current.clone(),
        }
    }
}

impl<T: Clone> Slot<T> {
    pub(crate) fn new(value: T) -> Self {
        Self {
            current: Arc::new(watch::Sender::new(value)),
        }
    }

    /// The current instance.
    pub(crate) fn get(&self) -> T {
        self.current.borrow().clone()
    }

    /// Makes `value` the current instance.
    pub(crate) fn set(&self, value: T) {
        self.current.send_replace(value);
    }

    /// Waits for a value for which `ready` is true.
    pub(crate) async fn wait_for(&self, ready: impl Fn(&T) -> bool) -> T {
        let mut rx = self.current.subscribe();
        let found = rx.wait_for(|value| ready(value)).await.map(|v| v.clone());
        // The sender lives in `self`, so the channel cannot close while we wait.
        found.unwrap_or_else(|_| self.get())
    }

    /// Waits at most `limit` for an instance for which `stale` is false (one that replaced a
    /// failed one); `None` if none came.
    pub(crate) async fn replacement(
        &self,
        stale: impl Fn(&T) -> bool,
        limit: Duration,
    ) -> Option<T> {
        let mut rx = self.current.subscribe();
        let found = tokio::time::timeout(limit, rx.wait_for(|value| !stale(value))).await;
        match found {
            Ok(Ok(value)) => Some(value.clone()),
            _ => None,
        }
    }
}
