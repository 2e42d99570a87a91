//! Presence over real WebSockets: state after join, diffs on join, leave, update, crash and
//! socket drop; several devices under one key; coalescing.

use std::collections::BTreeMap;
use std::time::Duration;

use fawkes_runtime::testing::{Frame, WsClient};
use fawkes_runtime::{PresenceConfig, RuntimeConfig};
use serde_json::{Value, json};

use crate::support::TestEndpoint;

/// Applies presence_state / presence_diff the way phoenix.js does (by phx_ref).
#[derive(Default, Debug)]
struct Synced(BTreeMap<String, Vec<Value>>);

impl Synced {
    fn state(&mut self, state: &Value) {
        self.0.clear();
        for (key, p) in state.as_object().expect("object") {
            self.0
                .insert(key.clone(), p["metas"].as_array().expect("metas").clone());
        }
    }

    fn diff(&mut self, diff: &Value) {
        assert!(
            diff["joins"].is_object() && diff["leaves"].is_object(),
            "both maps always present: {diff}"
        );
        for (key, p) in diff["joins"].as_object().expect("joins") {
            let metas = self.0.entry(key.clone()).or_default();
            for meta in p["metas"].as_array().expect("metas") {
                if !metas.iter().any(|m| m["phx_ref"] == meta["phx_ref"]) {
                    metas.push(meta.clone());
                }
            }
        }
        for (key, p) in diff["leaves"].as_object().expect("leaves") {
            if let Some(metas) = self.0.get_mut(key) {
                let gone: Vec<&Value> = p["metas"]
                    .as_array()
                    .expect("metas")
                    .iter()
                    .map(|m| &m["phx_ref"])
                    .collect();
                metas.retain(|m| !gone.contains(&&m["phx_ref"]));
                if metas.is_empty() {
                    self.0.remove(key);
                }
            }
        }
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

async fn join(c: &mut WsClient, topic: &str, meta: Value) -> (String, Value) {
    let (join_ref, reply) = c.join(topic, meta).await;
    assert_eq!(reply.status(), Some("ok"));
    let state = c.event(topic, "presence_state").await;
    assert_eq!(
        state.join_ref,
        json!(join_ref),
        "presence_state is a push carrying the join_ref"
    );
    (join_ref, state.payload)
}

async fn next_diff(c: &mut WsClient, topic: &str) -> Value {
    let diff: Frame = c.event(topic, "presence_diff").await;
    assert_eq!(diff.join_ref, Value::Null, "presence_diff is a broadcast");
    diff.payload
}

#[tokio::test]
async fn state_after_join_and_diffs_for_joins_leaves_and_updates() {
    let t = TestEndpoint::start().await;
    let mut ann = t.client("ann").await;
    let (_, state) = join(&mut ann, "presence:room", json!({"device": "phone"})).await;
    let meta = &state["ann"]["metas"][0];
    assert_eq!(meta["device"], "phone");
    let phx_ref = meta["phx_ref"].as_str().expect("phx_ref");
    assert_eq!(
        phx_ref.len(),
        20,
        "20 URL-safe base64 characters: {phx_ref}"
    );
    assert!(
        phx_ref
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );

    let mut bob = t.client("bob").await;
    let (jb, bob_state) = join(&mut bob, "presence:room", json!({"device": "laptop"})).await;
    // The state is the window's snapshot; newer changes (bob's own join, perhaps) follow as
    // diffs. Bob's synced view holds both.
    let mut bob_view = Synced::default();
    bob_view.state(&bob_state);
    sync_until(&mut bob, "presence:room", &mut bob_view, |v| {
        v.keys() == ["ann", "bob"]
    })
    .await;
    let mut ann_view = Synced::default();
    ann_view.state(&state);
    let diff = next_diff(&mut ann, "presence:room").await;
    // ann may first see her own join's diff; apply until bob is there.
    ann_view.diff(&diff);
    while !ann_view.keys().contains(&"bob") {
        ann_view.diff(&next_diff(&mut ann, "presence:room").await);
    }
    assert_eq!(ann_view.keys(), vec!["ann", "bob"]);

    // An update: the new meta joins and the old one leaves, in one diff.
    let r = bob
        .push(
            &jb,
            "presence:room",
            "update",
            json!({"device": "laptop", "status": "away"}),
        )
        .await;
    let new_ref = bob.reply(&r).await.response()["phx_ref"]
        .as_str()
        .expect("ref")
        .to_owned();
    let diff = next_diff(&mut ann, "presence:room").await;
    assert_eq!(diff["joins"]["bob"]["metas"][0]["status"], "away");
    assert_eq!(
        diff["joins"]["bob"]["metas"][0]["phx_ref"],
        new_ref.as_str()
    );
    let old_ref = diff["leaves"]["bob"]["metas"][0]["phx_ref"].clone();
    assert_eq!(diff["joins"]["bob"]["metas"][0]["phx_ref_prev"], old_ref);
    ann_view.diff(&diff);
    assert_eq!(ann_view.0["bob"].len(), 1);

    // Tracking the same key twice from one join is refused.
    let r = bob
        .push(&jb, "presence:room", "track_again", json!({}))
        .await;
    assert_eq!(
        bob.reply(&r).await.response(),
        &json!({"reason": "already tracked"})
    );

    // A leave removes bob.
    bob.push(&jb, "presence:room", "phx_leave", json!({})).await;
    let diff = next_diff(&mut ann, "presence:room").await;
    assert_eq!(diff["joins"], json!({}));
    assert_eq!(
        diff["leaves"]["bob"]["metas"][0]["phx_ref"],
        new_ref.as_str()
    );
    ann_view.diff(&diff);
    assert_eq!(ann_view.keys(), vec!["ann"]);
    assert_eq!(
        t.runtime
            .presence()
            .list("presence:room")
            .await
            .as_object()
            .map(|o| o.len()),
        Some(1)
    );
}

/// Applies the watcher's diffs until `done` holds for its view.
async fn sync_until(
    watcher: &mut WsClient,
    topic: &str,
    view: &mut Synced,
    done: impl Fn(&Synced) -> bool,
) {
    while !done(view) {
        view.diff(&next_diff(watcher, topic).await);
    }
}

#[tokio::test]
async fn one_user_on_several_devices_is_one_key_with_several_metas() {
    let t = TestEndpoint::start().await;
    let mut watcher = t.client("watcher").await;
    let (_, state) = join(&mut watcher, "presence:multi", json!({})).await;
    let mut view = Synced::default();
    view.state(&state);
    let mut phone = t.client("ann").await;
    let mut laptop = t.client("ann").await;
    join(&mut phone, "presence:multi", json!({"device": "phone"})).await;
    let (_, state) = join(&mut laptop, "presence:multi", json!({"device": "laptop"})).await;
    let mut laptop_view = Synced::default();
    laptop_view.state(&state);
    sync_until(&mut laptop, "presence:multi", &mut laptop_view, |v| {
        v.0.get("ann").is_some_and(|m| m.len() == 2)
    })
    .await;
    sync_until(&mut watcher, "presence:multi", &mut view, |v| {
        v.0.get("ann").is_some_and(|m| m.len() == 2)
    })
    .await;

    drop(phone);
    let diff = next_diff(&mut watcher, "presence:multi").await;
    assert_eq!(
        diff["leaves"]["ann"]["metas"][0]["device"], "phone",
        "{diff}"
    );
    view.diff(&diff);
    assert_eq!(view.0["ann"].len(), 1, "ann stays, on her laptop");
    let list = t.runtime.presence().list("presence:multi").await;
    assert_eq!(list["ann"]["metas"][0]["device"], "laptop");
    drop(laptop);
}

#[tokio::test]
async fn a_crash_or_a_dropped_socket_removes_the_presence_and_announces_it() {
    let t = TestEndpoint::start().await;
    let mut watcher = t.client("watcher").await;
    let (_, state) = join(&mut watcher, "presence:c", json!({})).await;
    let mut view = Synced::default();
    view.state(&state);
    let mut crashy = t.client("crashy").await;
    let (jc, _) = join(&mut crashy, "presence:c", json!({})).await;
    let mut dropper = t.client("dropper").await;
    join(&mut dropper, "presence:c", json!({})).await;
    sync_until(&mut watcher, "presence:c", &mut view, |v| {
        v.keys() == ["crashy", "dropper", "watcher"]
    })
    .await;

    crashy.push(&jc, "presence:c", "panic", json!({})).await;
    crashy.event("presence:c", "phx_error").await;
    drop(dropper);
    sync_until(&mut watcher, "presence:c", &mut view, |v| {
        v.keys() == ["watcher"]
    })
    .await;
    let list = t.runtime.presence().list("presence:c").await;
    assert_eq!(
        list.as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>()),
        Some(vec!["watcher".to_owned()]),
        "no stale entries"
    );
}

#[tokio::test]
async fn a_join_and_leave_within_one_window_announce_nothing() {
    let t = TestEndpoint::start_with(RuntimeConfig {
        presence: PresenceConfig {
            window: Duration::from_millis(300),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let mut watcher = t.client("watcher").await;
    join(&mut watcher, "presence:blink", json!({})).await;
    {
        let mut blink = t.client("blink").await;
        let (j, _) = join(&mut blink, "presence:blink", json!({})).await;
        blink
            .push(&j, "presence:blink", "phx_leave", json!({}))
            .await;
        blink.event("presence:blink", "phx_close").await;
    }
    // The next diff (the watcher's own join, or a later one) never mentions "blink".
    let mut marker = t.client("marker").await;
    join(&mut marker, "presence:blink", json!({})).await;
    let mut view = Synced::default();
    loop {
        let diff = next_diff(&mut watcher, "presence:blink").await;
        assert!(
            diff["joins"].get("blink").is_none() && diff["leaves"].get("blink").is_none(),
            "{diff}"
        );
        view.diff(&diff);
        if view.0.contains_key("marker") {
            break;
        }
    }
}

#[tokio::test]
async fn a_storm_of_joins_is_announced_in_a_few_coalesced_diffs() {
    let t = TestEndpoint::start_with(RuntimeConfig {
        presence: PresenceConfig {
            window: Duration::from_millis(200),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let mut watcher = t.client("watcher").await;
    join(&mut watcher, "presence:storm", json!({})).await;
    let mut clients = Vec::new();
    for i in 0..30 {
        let mut c = t.client(&format!("u{i}")).await;
        c.send_frame(
            json!("1"),
            json!("1"),
            "presence:storm",
            "phx_join",
            json!({}),
        )
        .await;
        clients.push(c);
    }
    let mut view = Synced::default();
    view.state(&json!({}));
    let mut diffs = 0;
    while view.0.len() < 31 {
        view.diff(&next_diff(&mut watcher, "presence:storm").await);
        diffs += 1;
    }
    assert!(diffs <= 5, "30 joins reached the watcher in {diffs} diffs");
    assert_eq!(
        t.runtime
            .presence()
            .list("presence:storm")
            .await
            .as_object()
            .map(|o| o.len()),
        Some(31)
    );
}

#[tokio::test]
async fn a_large_presence_state_arrives_whole_on_v2_and_v1() {
    let t = TestEndpoint::start().await;
    let mut watcher = t.client("watcher").await;
    let (_, state) = join(&mut watcher, "presence:big", json!({})).await;
    let mut view = Synced::default();
    view.state(&state);
    let mut members = Vec::new();
    for i in 0..150 {
        let mut c = t.client(&format!("member{i:03}")).await;
        c.send_frame(
            json!("1"),
            json!("1"),
            "presence:big",
            "phx_join",
            json!({"pad": "x".repeat(200)}),
        )
        .await;
        members.push(c);
    }
    sync_until(&mut watcher, "presence:big", &mut view, |v| {
        v.0.len() == 151
    })
    .await;

    // Over the sharing threshold: sent as fragments around one shared copy.
    let mut fresh = t.client("fresh").await;
    let (_, state) = join(&mut fresh, "presence:big", json!({})).await;
    assert!(state.to_string().len() > 16 * 1024);
    assert!(
        state.as_object().map(|o| o.len()) >= Some(151),
        "{} keys",
        state.as_object().map_or(0, |o| o.len())
    );
    assert_eq!(
        state["member042"]["metas"][0]["pad"].as_str().map(str::len),
        Some(200)
    );

    let mut old = WsClient::connect(&t.url("user=v1&vsn=1.0.0"))
        .await
        .expect("v1");
    old.send(tokio_tungstenite::tungstenite::Message::Text(
        json!({"topic": "presence:big", "event": "phx_join", "payload": {}, "ref": "1", "join_ref": "1"}).to_string().into(),
    ))
    .await;
    let state = old.event("presence:big", "presence_state").await;
    assert!(state.payload.as_object().map(|o| o.len()) >= Some(151));
}
