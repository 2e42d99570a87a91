//! Join/leave churn on one topic: every join is answered `ok`, however its topic actor comes
//! and goes under it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fawkes_runtime::TransportConfig;
use fawkes_runtime::testing::WsClient;
use serde_json::{Value, json};

use crate::support::TestEndpoint;

/// Pipelines `rounds` join/leave pairs on `topic`, then a message on a topic it has not joined
/// (answered in order by the socket actor, after every round), and returns the statuses of the
/// join replies on `topic`.
async fn churn(c: &mut WsClient, topic: &str, rounds: usize, burst: usize) -> Vec<String> {
    for round in 0..rounds {
        let join_ref = format!("j{burst}.{round}");
        c.send_frame(
            json!(join_ref),
            json!(join_ref),
            topic,
            "phx_join",
            json!({}),
        )
        .await;
        let leave_ref = format!("l{burst}.{round}");
        c.send_frame(
            json!(join_ref),
            json!(leave_ref),
            topic,
            "phx_leave",
            json!({}),
        )
        .await;
    }
    let marker = format!("end{burst}");
    c.send_frame(Value::Null, json!(marker), "lab:marker", "ping", json!({}))
        .await;
    let mut statuses = Vec::new();
    loop {
        let frame = c
            .try_expect(Duration::from_secs(30), &|_| true)
            .await
            .expect("frames until the marker's reply");
        if frame.msg_ref == json!(marker) {
            return statuses;
        }
        if frame.topic == topic
            && frame.event == "phx_reply"
            && frame.msg_ref.as_str().is_some_and(|r| r.starts_with('j'))
        {
            let status = frame.status().unwrap_or_default().to_owned();
            let reason = frame.response()["reason"].as_str().unwrap_or_default();
            statuses.push(format!("{status} {reason}").trim().to_owned());
        }
    }
}

/// How long the stray unsubscriber pauses between looks.
const PACE: Duration = Duration::from_micros(20);

/// Sets its flag when dropped (also when the test fails), to stop a helper thread.
#[derive(Default)]
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Ten sockets pipeline joins and leaves on one topic, in bursts that each start on an empty
/// topic, while other code unsubscribes an id the topic never had: its topic actor empties and
/// starts again over and over, and no join may fail to subscribe (before the fix some runs had
/// `join crashed` replies: fresh actors stopped on the stray unsubscribe, and joiners kept
/// finding actors about to close). A stress test; `pubsub::tests` pins the rule exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_join_leave_churn_on_one_topic_never_fails_a_join() {
    let t = TestEndpoint::start_with(TransportConfig {
        outbound_queue: 1_000_000,
        ..TransportConfig::default()
    })
    .await;
    const SOCKETS: usize = 10;
    const BURSTS: usize = 200;
    const ROUNDS: usize = 5;
    const TOPIC: &str = "lab:churn";
    let stop = StopOnDrop::default();
    // Meanwhile other code unsubscribes ids that never subscribed to the topic (a no-op, which
    // must not stop a topic actor that has not seen its first subscriber yet).
    let stray = {
        let (pubsub, stop) = (t.runtime.pubsub().clone(), stop.0.clone());
        let stranger = pubsub.subscribe("lab:elsewhere").await;
        std::thread::spawn(move || {
            // Aimed at the moment the topic's actor has just started: wait until there is
            // none, then hit the next one as soon as it is in the topic map. Paced, not
            // spinning: the machine's cores are the server's (the unit test in `pubsub` hits
            // that moment deterministically).
            let none = pubsub.topic_count();
            let running = || !stop.load(Ordering::Relaxed);
            while running() {
                while running() && pubsub.topic_count() > none {
                    std::thread::sleep(PACE);
                }
                while running() && pubsub.topic_count() == none {
                    // A miss costs one map lookup.
                    for _ in 0..16 {
                        pubsub.unsubscribe(TOPIC, stranger.id());
                    }
                    std::thread::sleep(PACE);
                }
            }
        })
    };
    let mut clients = Vec::new();
    for i in 0..SOCKETS {
        clients.push(t.client(&format!("churner{i}")).await);
    }
    let mut joins = 0;
    let mut failed = Vec::new();
    for burst in 0..BURSTS {
        // Every burst starts on an empty topic: its first joins start a fresh topic actor.
        let tasks: Vec<_> = clients
            .drain(..)
            .map(|mut c| {
                tokio::spawn(async move {
                    let statuses = churn(&mut c, TOPIC, ROUNDS, burst).await;
                    (c, statuses)
                })
            })
            .collect();
        for task in tasks {
            let (c, statuses) = task.await.expect("churner");
            clients.push(c);
            for status in statuses {
                joins += 1;
                if status != "ok" {
                    failed.push(status);
                }
            }
        }
    }
    drop(stop);
    stray.join().expect("stray unsubscriber");
    assert_eq!(joins, SOCKETS * BURSTS * ROUNDS, "every join was answered");
    assert!(
        failed.is_empty(),
        "{} of {joins} joins failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
}
