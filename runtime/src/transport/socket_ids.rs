//! Live sockets per socket id, counted by the runtime itself: a socket reserves its id right
//! after `connect` succeeds and its [`Reservation`] gives it back when dropped, however the
//! connection ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// The count of live sockets per socket id, with a cap.
#[derive(Debug)]
pub(crate) struct SocketIds {
    max: usize,
    counts: Mutex<HashMap<Arc<str>, usize>>,
}

/// The id already has as many live sockets as allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OverLimit;

/// One live socket's hold on its id.
#[derive(Debug)]
pub(crate) struct Reservation {
    ids: Arc<SocketIds>,
    id: Arc<str>,
}

impl SocketIds {
    /// At most `max` live sockets per id; 0: no limit (nothing is counted).
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            counts: Mutex::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, usize>> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserves a place for one more socket with `id`; `None` when there is no limit.
    pub(crate) fn reserve(self: &Arc<Self>, id: &str) -> Result<Option<Reservation>, OverLimit> {
        if self.max == 0 {
            return Ok(None);
        }
        let mut counts = self.lock();
        let id: Arc<str> = match counts.get_key_value(id) {
            Some((_, &count)) if count >= self.max => return Err(OverLimit),
            Some((key, _)) => key.clone(),
            None => Arc::from(id),
        };
        *counts.entry(id.clone()).or_insert(0) += 1;
        Ok(Some(Reservation {
            ids: self.clone(),
            id,
        }))
    }

    /// Live sockets with `id` (counted only under a limit).
    #[cfg(test)]
    pub(crate) fn count(&self, id: &str) -> usize {
        self.lock().get(id).copied().unwrap_or(0)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut counts = self.ids.lock();
        if let Some(count) = counts.get_mut(&self.id) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_are_capped_per_id_and_given_back_when_dropped() {
        let ids = SocketIds::new(2);
        let a1 = ids.reserve("a").expect("first");
        let a2 = ids.reserve("a").expect("second");
        assert_eq!(ids.reserve("a").err(), Some(OverLimit));
        let b = ids.reserve("b").expect("another id");
        drop(a1);
        let a3 = ids.reserve("a").expect("a place came free");
        drop((a2, a3, b));
        assert_eq!(ids.count("a") + ids.count("b"), 0);
        assert!(ids.lock().is_empty(), "no entry is left behind");

        let unlimited = SocketIds::new(0);
        for _ in 0..100 {
            assert!(matches!(unlimited.reserve("a"), Ok(None)));
        }
    }
}
