//! One topic's presences and its pending (not yet broadcast) diff. Pure data: no actors.
//!
//! Every meta carries a unique `phx_ref`; phoenix.js adds, replaces and removes metas by it.
//! Changes accumulate in a pending diff until the shard flushes it. Within one pending diff a
//! join followed by a leave of the same meta cancels out, so a flush never announces a meta
//! that is already gone — unless a client may have seen it in a served snapshot (it is
//! *exposed*), in which case the leave is announced too.
//!
//! The encoded list (`presence_state`) is computed at most once per window and served to every
//! join of that window: changes after it reach those clients in the next diff, because they
//! subscribed before asking for it.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use super::PresenceError;
use crate::SubscriberId;
use crate::cluster::wire::Op;

/// Where a presence tracked on another node comes from: that node's shard, in one life
/// (incarnation) of the node.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct Origin {
    pub(crate) node: Arc<str>,
    pub(crate) inc: u64,
    pub(crate) shard: u16,
}

/// Who tracks a presence: a join on this node, or another node.
#[derive(Debug, PartialEq, Eq)]
enum Owner {
    Local(SubscriberId),
    Remote(Arc<Origin>),
}

struct Entry {
    owner: Owner,
    meta: Map<String, Value>,
}

impl Entry {
    fn phx_ref(&self) -> Option<&str> {
        self.meta.get("phx_ref").and_then(Value::as_str)
    }
}

/// Metas by key, as `{key: [meta, …]}`.
type Metas = BTreeMap<String, Vec<Value>>;

#[derive(Default)]
struct Pending {
    joins: Metas,
    leaves: Metas,
}

/// The presences of one topic.
#[derive(Default)]
pub(crate) struct TopicPresence {
    entries: BTreeMap<String, Vec<Entry>>,
    pending: Pending,
    /// The encoded list served since the last flush.
    snapshot: Option<Arc<RawValue>>,
    /// `phx_ref`s of pending joins that a served snapshot contains.
    exposed: HashSet<String>,
    /// This node's own changes since the last flush, for the other nodes.
    outgoing: Vec<Op>,
}

fn as_object(meta: Value) -> Result<Map<String, Value>, PresenceError> {
    match meta {
        Value::Object(map) => Ok(map),
        _ => Err(PresenceError::MetaNotAnObject),
    }
}

impl TopicPresence {
    /// Adds a meta for `key`, owned by `owner`.
    pub(crate) fn track(
        &mut self,
        owner: SubscriberId,
        key: &str,
        meta: Value,
        phx_ref: String,
    ) -> Result<(), PresenceError> {
        let mut meta = as_object(meta)?;
        let owner = Owner::Local(owner);
        if self
            .entries
            .get(key)
            .is_some_and(|v| v.iter().any(|e| e.owner == owner))
        {
            return Err(PresenceError::AlreadyTracked);
        }
        meta.insert("phx_ref".into(), Value::String(phx_ref));
        meta.remove("phx_ref_prev");
        self.joined(key, &meta);
        self.outgoing.push(Op::Join(key.to_owned(), meta.clone()));
        self.entries
            .entry(key.to_owned())
            .or_default()
            .push(Entry { owner, meta });
        Ok(())
    }

    /// Replaces `owner`'s meta for `key` with a new one (new `phx_ref`, old one as
    /// `phx_ref_prev`): the old meta leaves and the new one joins in the same diff.
    pub(crate) fn update(
        &mut self,
        owner: SubscriberId,
        key: &str,
        meta: Value,
        phx_ref: String,
    ) -> Result<(), PresenceError> {
        let mut meta = as_object(meta)?;
        let owner = Owner::Local(owner);
        let entry = self
            .entries
            .get_mut(key)
            .and_then(|v| v.iter_mut().find(|e| e.owner == owner))
            .ok_or(PresenceError::NotTracked)?;
        let old = std::mem::take(&mut entry.meta);
        let prev = old.get("phx_ref").cloned().unwrap_or(Value::Null);
        meta.insert("phx_ref".into(), Value::String(phx_ref));
        meta.insert("phx_ref_prev".into(), prev.clone());
        entry.meta = meta.clone();
        self.left(key, &old);
        self.joined(key, &meta);
        if let Value::String(prev) = prev {
            self.outgoing.push(Op::Leave(key.to_owned(), prev));
        }
        self.outgoing.push(Op::Join(key.to_owned(), meta));
        Ok(())
    }

    /// Removes `owner`'s meta for `key`.
    pub(crate) fn untrack(&mut self, owner: SubscriberId, key: &str) -> bool {
        let owner = Owner::Local(owner);
        let Some(entry) = self.remove_where(key, |e| e.owner == owner) else {
            return false;
        };
        if let Some(phx_ref) = entry.phx_ref() {
            self.outgoing
                .push(Op::Leave(key.to_owned(), phx_ref.to_owned()));
        }
        true
    }

    /// Removes the first entry of `key` that `which` picks, announcing it as left.
    fn remove_where(&mut self, key: &str, which: impl Fn(&Entry) -> bool) -> Option<Entry> {
        let list = self.entries.get_mut(key)?;
        let at = list.iter().position(which)?;
        let entry = list.remove(at);
        if list.is_empty() {
            self.entries.remove(key);
        }
        self.left(key, &entry.meta);
        Some(entry)
    }

    /// Applies another node's changes (from `origin`, in order). A join already known by its
    /// `phx_ref` and a leave of an unknown one change nothing. Whether anything changed.
    pub(crate) fn apply_remote(&mut self, origin: &Arc<Origin>, ops: Vec<Op>) -> bool {
        let mut changed = false;
        for op in ops {
            changed |= match op {
                Op::Join(key, meta) => self.join_remote(origin, key, meta),
                Op::Leave(key, phx_ref) => self
                    .remove_where(&key, |e| {
                        matches!(&e.owner, Owner::Remote(o) if o == origin)
                            && e.phx_ref() == Some(&phx_ref)
                    })
                    .is_some(),
            };
        }
        changed
    }

    fn join_remote(&mut self, origin: &Arc<Origin>, key: String, meta: Map<String, Value>) -> bool {
        let phx_ref = meta.get("phx_ref").and_then(Value::as_str);
        if phx_ref.is_none()
            || self
                .entries
                .get(&key)
                .is_some_and(|v| v.iter().any(|e| e.phx_ref() == phx_ref))
        {
            return false;
        }
        self.joined(&key, &meta);
        self.entries.entry(key).or_default().push(Entry {
            owner: Owner::Remote(origin.clone()),
            meta,
        });
        true
    }

    /// Replaces everything `origin` tracks here with `entries` (its whole state for this
    /// topic): what is no longer there leaves, what is new joins. Whether anything changed.
    pub(crate) fn replace_origin(
        &mut self,
        origin: &Arc<Origin>,
        entries: Vec<(String, Map<String, Value>)>,
    ) -> bool {
        let keep: HashSet<(&str, &str)> = entries
            .iter()
            .filter_map(|(key, meta)| Some((key.as_str(), meta.get("phx_ref")?.as_str()?)))
            .collect();
        let stale: Vec<(String, String)> = self
            .entries
            .iter()
            .flat_map(|(key, list)| list.iter().map(move |e| (key, e)))
            .filter(|(key, e)| {
                matches!(&e.owner, Owner::Remote(o) if o == origin)
                    && !e
                        .phx_ref()
                        .is_some_and(|r| keep.contains(&(key.as_str(), r)))
            })
            .filter_map(|(key, e)| Some((key.clone(), e.phx_ref()?.to_owned())))
            .collect();
        let mut changed = !stale.is_empty();
        for (key, phx_ref) in stale {
            self.remove_where(&key, |e| e.phx_ref() == Some(&phx_ref));
        }
        for (key, meta) in entries {
            changed |= self.join_remote(origin, key, meta);
        }
        changed
    }

    /// Removes every presence tracked by node `node` (any life of it). Whether any went.
    pub(crate) fn drop_node(&mut self, node: &str) -> bool {
        let gone: Vec<(String, String)> = self
            .entries
            .iter()
            .flat_map(|(key, list)| list.iter().map(move |e| (key, e)))
            .filter(|(_, e)| matches!(&e.owner, Owner::Remote(o) if &*o.node == node))
            .filter_map(|(key, e)| Some((key.clone(), e.phx_ref()?.to_owned())))
            .collect();
        for (key, phx_ref) in &gone {
            self.remove_where(key, |e| e.phx_ref() == Some(phx_ref));
        }
        !gone.is_empty()
    }

    /// Whether `origin` tracks anything here.
    pub(crate) fn has_origin(&self, origin: &Arc<Origin>) -> bool {
        self.entries
            .values()
            .flatten()
            .any(|e| matches!(&e.owner, Owner::Remote(o) if o == origin))
    }

    /// The presences tracked on this node (for another node's copy).
    pub(crate) fn local_entries(&self) -> Vec<(String, Map<String, Value>)> {
        self.entries
            .iter()
            .flat_map(|(key, list)| list.iter().map(move |e| (key, e)))
            .filter(|(_, e)| matches!(e.owner, Owner::Local(_)))
            .map(|(key, e)| (key.clone(), e.meta.clone()))
            .collect()
    }

    /// This node's changes since the last call, for the other nodes; a join that left again
    /// meanwhile is left out.
    pub(crate) fn take_outgoing(&mut self) -> Vec<Op> {
        let ops = std::mem::take(&mut self.outgoing);
        let left: HashSet<&str> = ops
            .iter()
            .filter_map(|op| match op {
                Op::Leave(_, phx_ref) => Some(phx_ref.as_str()),
                Op::Join(..) => None,
            })
            .collect();
        let joined_then_left: HashSet<String> = ops
            .iter()
            .filter_map(|op| match op {
                Op::Join(_, meta) => meta.get("phx_ref")?.as_str(),
                Op::Leave(..) => None,
            })
            .filter(|r| left.contains(r))
            .map(str::to_owned)
            .collect();
        if joined_then_left.is_empty() {
            return ops;
        }
        ops.into_iter()
            .filter(|op| {
                let phx_ref = match op {
                    Op::Join(_, meta) => meta.get("phx_ref").and_then(Value::as_str),
                    Op::Leave(_, phx_ref) => Some(phx_ref.as_str()),
                };
                !phx_ref.is_some_and(|r| joined_then_left.contains(r))
            })
            .collect()
    }

    /// Removes every meta `owner` tracked (its channel ended). Returns how many went.
    pub(crate) fn untrack_owner(&mut self, owner: SubscriberId) -> usize {
        let local = Owner::Local(owner);
        let keys: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, v)| v.iter().any(|e| e.owner == local))
            .map(|(k, _)| k.clone())
            .collect();
        keys.iter().filter(|key| self.untrack(owner, key)).count()
    }

    /// `{key: {"metas": [meta, …]}}`, the `presence_state` payload.
    pub(crate) fn list(&self) -> Value {
        let state: Map<String, Value> = self
            .entries
            .iter()
            .map(|(key, entries)| {
                let metas: Vec<Value> = entries
                    .iter()
                    .map(|e| Value::Object(e.meta.clone()))
                    .collect();
                (key.clone(), json!({ "metas": metas }))
            })
            .collect();
        Value::Object(state)
    }

    /// The list, encoded, as of at most one window ago (see the module docs).
    pub(crate) fn snapshot(&mut self) -> Arc<RawValue> {
        if let Some(snapshot) = &self.snapshot {
            return snapshot.clone();
        }
        // A `Value` always serializes.
        let snapshot = serde_json::value::to_raw_value(&self.list())
            .map_or_else(|_| crate::protocol::empty_object(), Arc::from);
        for metas in self.pending.joins.values() {
            self.exposed.extend(
                metas
                    .iter()
                    .filter_map(|m| m.get("phx_ref")?.as_str().map(str::to_owned)),
            );
        }
        self.snapshot = Some(snapshot.clone());
        snapshot
    }

    /// How many keys are present.
    #[cfg(test)]
    pub(crate) fn key_count(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is present and nothing is pending.
    pub(crate) fn is_idle(&self) -> bool {
        self.entries.is_empty()
            && self.pending.joins.is_empty()
            && self.pending.leaves.is_empty()
            && self.outgoing.is_empty()
    }

    /// The pending diff as `{"joins": {...}, "leaves": {...}}` (both always present), or
    /// `None` if nothing changed.
    pub(crate) fn take_diff(&mut self) -> Option<Value> {
        self.snapshot = None;
        self.exposed.clear();
        let pending = std::mem::take(&mut self.pending);
        if pending.joins.is_empty() && pending.leaves.is_empty() {
            return None;
        }
        let group = |metas: Metas| -> Value {
            Value::Object(
                metas
                    .into_iter()
                    .map(|(key, metas)| (key, json!({ "metas": metas })))
                    .collect(),
            )
        };
        Some(json!({ "joins": group(pending.joins), "leaves": group(pending.leaves) }))
    }

    fn joined(&mut self, key: &str, meta: &Map<String, Value>) {
        self.pending
            .joins
            .entry(key.to_owned())
            .or_default()
            .push(Value::Object(meta.clone()));
    }

    fn left(&mut self, key: &str, meta: &Map<String, Value>) {
        let phx_ref = meta.get("phx_ref");
        let exposed = phx_ref
            .and_then(Value::as_str)
            .is_some_and(|r| self.exposed.contains(r));
        // A meta that joined in this same window was never announced: just forget it.
        if !exposed
            && let Some(joins) = self.pending.joins.get_mut(key)
            && let Some(at) = joins.iter().position(|m| m.get("phx_ref") == phx_ref)
        {
            joins.remove(at);
            if joins.is_empty() {
                self.pending.joins.remove(key);
            }
            return;
        }
        self.pending
            .leaves
            .entry(key.to_owned())
            .or_default()
            .push(Value::Object(meta.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(n: u64) -> SubscriberId {
        SubscriberId::from_raw(n)
    }

    #[test]
    fn track_list_and_diff() {
        let mut p = TopicPresence::default();
        p.track(owner(1), "42", json!({"device": "phone"}), "ref-a".into())
            .expect("track");
        p.track(owner(2), "42", json!({"device": "laptop"}), "ref-b".into())
            .expect("second device, same key");
        assert_eq!(
            p.track(owner(1), "42", json!({}), "x".into()),
            Err(PresenceError::AlreadyTracked)
        );
        assert_eq!(
            p.track(owner(3), "7", json!("not an object"), "x".into()),
            Err(PresenceError::MetaNotAnObject)
        );
        assert_eq!(
            p.list(),
            json!({"42": {"metas": [{"device": "phone", "phx_ref": "ref-a"}, {"device": "laptop", "phx_ref": "ref-b"}]}})
        );
        assert_eq!(
            p.take_diff(),
            Some(
                json!({"joins": {"42": {"metas": [{"device": "phone", "phx_ref": "ref-a"}, {"device": "laptop", "phx_ref": "ref-b"}]}}, "leaves": {}})
            )
        );
        assert_eq!(p.take_diff(), None, "a flushed diff is gone");
    }

    #[test]
    fn update_leaves_the_old_meta_and_joins_the_new_in_one_diff() {
        let mut p = TopicPresence::default();
        p.track(owner(1), "42", json!({"status": "away"}), "r1".into())
            .expect("track");
        p.take_diff();
        assert_eq!(
            p.update(owner(2), "42", json!({}), "r2".into()),
            Err(PresenceError::NotTracked)
        );
        p.update(owner(1), "42", json!({"status": "busy"}), "r2".into())
            .expect("update");
        assert_eq!(
            p.take_diff(),
            Some(json!({
                "joins": {"42": {"metas": [{"status": "busy", "phx_ref": "r2", "phx_ref_prev": "r1"}]}},
                "leaves": {"42": {"metas": [{"status": "away", "phx_ref": "r1"}]}}
            }))
        );
    }

    #[test]
    fn untracking_an_owner_removes_all_its_metas_and_empty_keys() {
        let mut p = TopicPresence::default();
        p.track(owner(1), "a", json!({}), "r1".into())
            .expect("track");
        p.track(owner(1), "b", json!({}), "r2".into())
            .expect("track");
        p.track(owner(2), "b", json!({}), "r3".into())
            .expect("track");
        p.take_diff();
        assert_eq!(p.untrack_owner(owner(1)), 2);
        assert_eq!(p.list(), json!({"b": {"metas": [{"phx_ref": "r3"}]}}));
        assert_eq!(
            p.take_diff(),
            Some(
                json!({"joins": {}, "leaves": {"a": {"metas": [{"phx_ref": "r1"}]}, "b": {"metas": [{"phx_ref": "r2"}]}}})
            )
        );
        assert!(!p.untrack(owner(1), "a"));
        assert!(p.untrack(owner(2), "b"));
        p.take_diff();
        assert!(p.is_idle());
    }

    #[test]
    fn a_join_seen_in_a_snapshot_is_announced_even_if_it_leaves_in_the_same_window() {
        let mut p = TopicPresence::default();
        p.track(owner(1), "seen", json!({}), "r1".into())
            .expect("track");
        let snapshot = p.snapshot();
        assert!(snapshot.get().contains("\"seen\""));
        assert!(
            Arc::ptr_eq(&snapshot, &p.snapshot()),
            "served once per window"
        );
        p.track(owner(2), "unseen", json!({}), "r2".into())
            .expect("track");
        p.untrack(owner(1), "seen");
        p.untrack(owner(2), "unseen");
        assert_eq!(
            p.take_diff(),
            Some(
                json!({"joins": {"seen": {"metas": [{"phx_ref": "r1"}]}}, "leaves": {"seen": {"metas": [{"phx_ref": "r1"}]}}})
            ),
            "a client holding the snapshot must learn that `seen` left; `unseen` was never shown"
        );
        assert_eq!(p.snapshot().get(), "{}", "a flush starts a new snapshot");
    }

    #[test]
    fn changes_within_one_window_coalesce() {
        let mut p = TopicPresence::default();
        for i in 0..100 {
            p.track(owner(i), &i.to_string(), json!({}), format!("r{i}"))
                .expect("track");
        }
        // A join that leaves again before the flush is never announced.
        p.untrack(owner(5), "5");
        // An update within the window announces only the newest meta.
        p.update(owner(6), "6", json!({"v": 2}), "r6b".into())
            .expect("update");
        let diff = p.take_diff().expect("one diff");
        let joins = diff["joins"].as_object().expect("joins");
        assert_eq!(joins.len(), 99);
        assert!(!joins.contains_key("5"));
        assert_eq!(
            joins["6"],
            json!({"metas": [{"v": 2, "phx_ref": "r6b", "phx_ref_prev": "r6"}]})
        );
        assert_eq!(diff["leaves"], json!({}));
        assert_eq!(p.key_count(), 99);
    }
}
