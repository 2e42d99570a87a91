//! Unit tests of `TopicPresence`.
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
    let mut p = TopicPresence::new(true);
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
    assert!(!p.is_idle(), "changes for the other nodes are pending");
    p.take_outgoing();
    assert!(p.is_idle());
}

fn origin(node: &str, shard: u16) -> Arc<Origin> {
    Arc::new(Origin {
        node: node.into(),
        inc: 1,
        shard,
    })
}

fn meta(phx_ref: &str) -> Map<String, Value> {
    let mut meta = Map::new();
    meta.insert("phx_ref".into(), json!(phx_ref));
    meta
}

#[test]
fn a_single_node_keeps_nothing_for_other_nodes() {
    let mut p = TopicPresence::default();
    p.track(owner(1), "a", json!({}), "r1".into())
        .expect("track");
    p.untrack(owner(1), "a");
    assert_eq!(p.take_outgoing(), vec![]);
}

#[test]
fn local_changes_go_out_in_order_even_a_join_that_left_again() {
    let mut p = TopicPresence::new(true);
    p.track(owner(1), "a", json!({}), "r1".into())
        .expect("track");
    p.track(owner(2), "b", json!({}), "r2".into())
        .expect("track");
    // A dump taken now carries b's join to another node...
    assert_eq!(p.local_entries().len(), 2);
    // ...so its leave, in the same window, must follow it there.
    p.untrack(owner(2), "b");
    p.update(owner(1), "a", json!({"s": 1}), "r3".into())
        .expect("update");
    let ops = p.take_outgoing();
    let kinds: Vec<(char, &str)> = ops
        .iter()
        .map(|op| match op {
            Op::Join(key, _) => ('j', key.as_str()),
            Op::Leave(key, _) => ('l', key.as_str()),
        })
        .collect();
    assert_eq!(
        kinds,
        [('j', "a"), ('j', "b"), ('l', "b"), ('l', "a"), ('j', "a")],
        "{ops:?}"
    );
    assert!(matches!(&ops[4], Op::Join(_, m) if m["phx_ref"] == "r3" && m["s"] == 1));
    assert_eq!(ops[3], Op::Leave("a".into(), "r1".into()));
    assert_eq!(p.take_outgoing(), vec![]);
}

#[test]
fn remote_changes_are_idempotent_listed_and_never_sent_back() {
    let mut p = TopicPresence::new(true);
    let b = origin("b", 0);
    let joins = vec![Op::Join("bob".into(), meta("x1"))];
    assert!(p.apply_remote(&b, joins.clone()));
    assert!(!p.apply_remote(&b, joins), "a join known by its phx_ref");
    assert!(!p.apply_remote(&b, vec![Op::Leave("bob".into(), "nope".into())]));
    assert_eq!(p.list(), json!({"bob": {"metas": [{"phx_ref": "x1"}]}}));
    assert_eq!(
        p.take_outgoing(),
        vec![],
        "other nodes' changes are theirs to send"
    );
    assert!(p.take_diff().is_some(), "local clients are told");
    // A local join on the same key sits beside it; untracking the local owner leaves it.
    p.track(owner(1), "bob", json!({}), "r1".into())
        .expect("track");
    assert_eq!(p.untrack_owner(owner(1)), 1);
    assert!(p.apply_remote(&b, vec![Op::Leave("bob".into(), "x1".into())]));
    assert_eq!(p.list(), json!({}));
}

#[test]
fn a_whole_state_replaces_one_origin_and_a_dropped_node_leaves() {
    let mut p = TopicPresence::default();
    let (b0, b1, c0) = (origin("b", 0), origin("b", 1), origin("c", 0));
    p.apply_remote(
        &b0,
        vec![
            Op::Join("k1".into(), meta("b0-1")),
            Op::Join("k2".into(), meta("b0-2")),
        ],
    );
    p.apply_remote(&b1, vec![Op::Join("k1".into(), meta("b1-1"))]);
    p.apply_remote(&c0, vec![Op::Join("k3".into(), meta("c0-1"))]);
    p.take_diff();
    // b's shard 0 now has only k2's meta and a new one: k1's b0 meta leaves, b1's stays.
    assert!(p.replace_origin(
        &b0,
        vec![("k2".into(), meta("b0-2")), ("k4".into(), meta("b0-4"))]
    ));
    let diff = p.take_diff().expect("changes");
    assert_eq!(
        diff["leaves"],
        json!({"k1": {"metas": [{"phx_ref": "b0-1"}]}})
    );
    assert_eq!(
        diff["joins"],
        json!({"k4": {"metas": [{"phx_ref": "b0-4"}]}})
    );
    assert!(!p.replace_origin(
        &b0,
        vec![("k2".into(), meta("b0-2")), ("k4".into(), meta("b0-4"))]
    ));
    assert!(p.drop_node("b"));
    assert_eq!(p.list(), json!({"k3": {"metas": [{"phx_ref": "c0-1"}]}}));
    assert!(!p.drop_node("b"));
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
