//! The registry handle's journal: the live sockets and the recent disconnects a restarted
//! registry, or a socket still registering, is checked against.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::ActorId;

use super::LiveSocket;

/// How long a disconnect is remembered for sockets still registering: a socket whose connect
/// check started before a disconnect of one of its names, and that registers after it, is
/// closed as it registers (its token may have been revoked in between).
const REMEMBER_DISCONNECTS: Duration = Duration::from_secs(60);

/// The most disconnects remembered at once. Beyond it the oldest are forgotten early (before
/// [`REMEMBER_DISCONNECTS`]): a socket whose connect check started before a forgotten
/// disconnect and that registers only after it is no longer closed by it. That needs more
/// than this many disconnects between a socket's connect check and its registration (usually
/// milliseconds apart), so the cap only shortens the memory under a flood of disconnects
/// (a channel relaying client-chosen event names can send `disconnect` on its topics).
const MAX_REMEMBERED_DISCONNECTS: usize = 16 * 1024;

/// A live socket in the journal: its names, its session, when its connect check started.
pub(super) type LiveEntry = (Arc<[String]>, Arc<LiveSocket>, Instant);

/// What a registry restart rebuilds from: every live socket and the recent disconnects. Kept
/// by the handle, outside the actor, and written before each message to the actor is sent
/// (under this lock, so the actor sees messages in journal order). Every operation on it is
/// O(1) (amortised), so registrations never wait behind a scan.
#[derive(Default)]
pub(super) struct Journal {
    pub(super) live: HashMap<ActorId, LiveEntry>,
    pub(super) disconnects: Disconnects,
}

/// The recent disconnects of each name, and every disconnect in time order to forget them
/// oldest first (after [`REMEMBER_DISCONNECTS`], or beyond [`MAX_REMEMBERED_DISCONNECTS`]).
#[derive(Default)]
pub(super) struct Disconnects {
    names: HashMap<Arc<str>, Remembered>,
    order: VecDeque<(Arc<str>, Stamp)>,
    /// The sequence number of the next disconnect remembered.
    next: u64,
}

/// When a disconnect happened, and which one it was: two disconnects of a name may share an
/// instant, so forgetting one matches on the sequence number, never on the time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    at: Instant,
    seq: u64,
}

/// A name's recent disconnects, as much as sockets still registering need.
#[derive(Default, Debug, Clone, PartialEq, Eq)]
struct Remembered {
    /// The last disconnect of every socket with the name.
    all: Option<Stamp>,
    /// The last disconnect that spared sockets also carrying a name (later than `all`).
    except: Option<(Stamp, Arc<str>)>,
}

impl Remembered {
    fn is_empty(&self) -> bool {
        self.all.is_none() && self.except.is_none()
    }
}

impl Disconnects {
    /// Remembers a disconnect of `name` at `now` (not before any remembered one) of every
    /// socket, or of those not also carrying `keep`; forgets the ones too old or too many.
    pub(super) fn remember(&mut self, name: &str, keep: Option<&str>, now: Instant) {
        while let Some((_, stamp)) = self.order.front()
            && (now.duration_since(stamp.at) >= REMEMBER_DISCONNECTS
                || self.order.len() >= MAX_REMEMBERED_DISCONNECTS)
        {
            self.forget_oldest();
        }
        let stamp = Stamp {
            at: now,
            seq: self.next,
        };
        self.next += 1;
        let name: Arc<str> = Arc::from(name);
        let entry = self.names.entry(name.clone()).or_default();
        match keep {
            // Covers every earlier disconnect of the name.
            None => {
                *entry = Remembered {
                    all: Some(stamp),
                    except: None,
                }
            }
            Some(keep) => {
                // One spared name is remembered: an earlier disconnect that spared another
                // one now counts as closing every socket (closing too many is safe, the
                // clients reconnect; too few is not).
                if let Some((at, spared)) = entry.except.take()
                    && *spared != *keep
                {
                    entry.all = Some(at);
                }
                entry.except = Some((stamp, Arc::from(keep)));
            }
        }
        self.order.push_back((name, stamp));
    }

    fn forget_oldest(&mut self) {
        let Some((name, stamp)) = self.order.pop_front() else {
            return;
        };
        let Some(entry) = self.names.get_mut(&name) else {
            return;
        };
        // Only what that disconnect left (a later one of the name is still remembered, even
        // at the same instant).
        if entry.all.is_some_and(|all| all.seq == stamp.seq) {
            entry.all = None;
        }
        if entry
            .except
            .as_ref()
            .is_some_and(|(except, _)| except.seq == stamp.seq)
        {
            entry.except = None;
        }
        if entry.is_empty() {
            self.names.remove(&name);
        }
    }

    /// Whether a socket carrying `names`, whose connect check started at `since`, missed a
    /// disconnect still remembered.
    fn missed(&self, names: &[String], since: Instant) -> bool {
        names.iter().any(|name| {
            let Some(entry) = self.names.get(name.as_str()) else {
                return false;
            };
            entry.all.is_some_and(|all| all.at >= since)
                || entry.except.as_ref().is_some_and(|(except, keep)| {
                    except.at >= since && !names.iter().any(|n| **n == **keep)
                })
        })
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.order.len()
    }
}

impl Journal {
    /// Whether a socket whose connect check started at `connected_at` must be closed: one of
    /// its names was disconnected since.
    pub(super) fn missed_disconnect(&self, names: &[String], connected_at: Instant) -> bool {
        self.disconnects.missed(names, connected_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn disconnects_are_forgotten_oldest_first_after_a_minute_or_beyond_the_cap() {
        let mut d = Disconnects::default();
        let t0 = Instant::now();
        let before = t0 - Duration::from_millis(1);
        d.remember("a", None, t0);
        d.remember("b", None, t0 + Duration::from_secs(30));
        assert!(d.missed(&names(&["a"]), before));
        assert!(
            !d.missed(&names(&["a"]), t0 + Duration::from_millis(1)),
            "after it"
        );
        // A minute on, remembering another prunes `a` (and only `a`).
        d.remember("c", None, t0 + REMEMBER_DISCONNECTS);
        assert!(
            !d.missed(&names(&["a"]), before),
            "forgotten after a minute"
        );
        assert!(d.missed(&names(&["b"]), before));
        assert_eq!(d.len(), 2);
        // A name disconnected again keeps its later time when the older entry goes.
        let t1 = t0 + REMEMBER_DISCONNECTS;
        d.remember("b", None, t1 + Duration::from_secs(20));
        d.remember("x", None, t1 + Duration::from_secs(31));
        assert!(
            d.missed(&names(&["b"]), t1 + Duration::from_secs(10)),
            "the later disconnect of b is still remembered"
        );

        // The cap: the oldest go first, each step O(1), memory bounded.
        let mut d = Disconnects::default();
        let total = MAX_REMEMBERED_DISCONNECTS + 10;
        for i in 0..total {
            d.remember(&format!("n{i}"), None, t0 + Duration::from_micros(i as u64));
        }
        assert_eq!(d.len(), MAX_REMEMBERED_DISCONNECTS);
        assert_eq!(d.names.len(), MAX_REMEMBERED_DISCONNECTS);
        assert!(
            !d.missed(&names(&["n0"]), before),
            "the oldest are forgotten"
        );
        assert!(!d.missed(&names(&["n9"]), before));
        assert!(d.missed(&names(&["n10"]), before));
        assert!(d.missed(&names(&[&format!("n{}", total - 1)]), before));
        // Floods of one name are bounded too.
        let mut d = Disconnects::default();
        for i in 0..total {
            d.remember("same", None, t0 + Duration::from_micros(i as u64));
        }
        assert_eq!(d.len(), MAX_REMEMBERED_DISCONNECTS);
        assert!(d.missed(
            &names(&["same"]),
            t0 + Duration::from_micros(total as u64 - 1)
        ));
    }

    #[test]
    fn forgetting_a_disconnect_keeps_a_later_one_of_the_same_name_at_the_same_instant() {
        let t0 = Instant::now();
        let before = t0 - Duration::from_millis(1);
        let flood = |d: &mut Disconnects, from: usize| {
            for i in from..MAX_REMEMBERED_DISCONNECTS {
                d.remember(&format!("n{i}"), None, t0);
            }
        };
        // Two plain disconnects of one name at one instant: when the cap forgets the first,
        // the second is still remembered.
        let mut d = Disconnects::default();
        d.remember("user:1", None, t0);
        d.remember("user:1", None, t0);
        flood(&mut d, 2);
        d.remember("next", None, t0);
        assert_eq!(d.len(), MAX_REMEMBERED_DISCONNECTS);
        assert!(
            d.missed(&names(&["user:1"]), before),
            "the later disconnect was forgotten with the earlier one"
        );
        // The same with a disconnect sparing a name, and one whose earlier record was
        // promoted to every socket.
        let mut d = Disconnects::default();
        d.remember("user:1", Some("token:a"), t0);
        d.remember("user:1", Some("token:a"), t0);
        flood(&mut d, 2);
        d.remember("next", None, t0);
        assert!(d.missed(&names(&["user:1", "token:b"]), before));
        assert!(!d.missed(&names(&["user:1", "token:a"]), before), "spared");
        let mut d = Disconnects::default();
        d.remember("user:1", Some("token:a"), t0);
        d.remember("user:1", Some("token:b"), t0);
        flood(&mut d, 2);
        d.remember("next", None, t0);
        assert!(
            d.missed(&names(&["user:1", "token:a"]), before),
            "the second disconnect, which did not spare token:a"
        );
        assert!(!d.missed(&names(&["user:1", "token:b"]), before), "spared");
    }

    #[test]
    fn a_disconnect_that_spares_a_name_spares_the_sockets_carrying_it() {
        let mut d = Disconnects::default();
        let t0 = Instant::now();
        let before = t0 - Duration::from_millis(1);
        d.remember("user:1", Some("token:a"), t0);
        assert!(d.missed(&names(&["user:1", "token:b"]), before));
        assert!(!d.missed(&names(&["user:1", "token:a"]), before), "spared");
        assert!(
            !d.missed(&names(&["user:2", "token:b"]), before),
            "another name"
        );

        // A second one sparing another name: the first now counts for every socket (more is
        // closed, never less).
        d.remember("user:1", Some("token:b"), t0 + Duration::from_secs(1));
        assert!(d.missed(&names(&["user:1", "token:a"]), before));
        assert!(
            !d.missed(
                &names(&["user:1", "token:b"]),
                t0 + Duration::from_millis(500)
            ),
            "after the first, spared by the second"
        );
        assert!(
            d.missed(&names(&["user:1", "token:b"]), before),
            "the first"
        );
        // A plain disconnect covers everything before it.
        d.remember("user:1", None, t0 + Duration::from_secs(2));
        assert!(d.missed(
            &names(&["user:1", "token:b"]),
            t0 + Duration::from_millis(1500)
        ));
        // Forgotten in order: nothing is left once all three are a minute old.
        d.remember(
            "other",
            None,
            t0 + Duration::from_secs(2) + REMEMBER_DISCONNECTS,
        );
        assert!(!d.missed(&names(&["user:1"]), before));
        assert!(!d.names.contains_key("user:1"));
    }
}
