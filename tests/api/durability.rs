//! Nothing acknowledged is lost: `room:chat` replies `ok` only after the commit, so a server
//! killed with SIGKILL mid-stream still has, after a restart on the same database, every
//! message it acknowledged (run on SQLite, and on PostgreSQL with `TEST_DATABASE_URL`).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use fawkes::testing::WsClient;
use serde_json::json;

use crate::support::TestServer;
use crate::support::process::{Process, fawkes};

/// Messages kept in flight (sent, not yet acknowledged) while streaming.
const WINDOW: usize = 16;
/// The server is killed once this many messages are acknowledged.
const KILL_AFTER_ACKS: usize = 40;

fn serve(dir: &std::path::Path, database_url: &str, key: &str) -> Process {
    let mut command = fawkes(dir);
    command
        .args(["--bind", "127.0.0.1:0"])
        .env("DATABASE_URL", database_url)
        .env("FAWKES_SECRET_KEY", key);
    Process::serve(command)
}

#[tokio::test]
async fn every_acknowledged_message_survives_a_sigkill_mid_stream() {
    // Users and a conversation, made with an in-process server that is then stopped.
    let t = TestServer::start().await;
    let (_, ta) = t.user("a@example.com").await;
    let (b, _) = t.user("b@example.com").await;
    let conv = t.conversation(&ta, b).await;
    let (db, config) = t.stop().await;
    let key = config.secret_key.clone().expect("a test key");
    let dir = tempfile::tempdir().expect("dir");

    let mut server = serve(dir.path(), &db.url, &key);
    let url = format!(
        "ws://{}/socket/websocket?token={ta}&vsn=2.0.0",
        server.addr()
    );
    let mut client = WsClient::connect(&url).await.expect("connect");
    let (join_ref, reply) = client.join("room:chat", json!({})).await;
    assert_eq!(reply.status(), Some("ok"));

    // Stream messages with a window in flight; SIGKILL the server after KILL_AFTER_ACKS acks.
    let mut in_flight: HashMap<String, String> = HashMap::new();
    let mut acked: Vec<(i64, String)> = Vec::new();
    let mut sent = 0usize;
    let mut killed = false;
    loop {
        while !killed && in_flight.len() < WINDOW {
            let content = format!("m{sent}");
            let msg_ref = client
                .push(
                    &join_ref,
                    "room:chat",
                    "send_msg",
                    json!({"user": b, "conv": conv, "message": content}),
                )
                .await;
            in_flight.insert(msg_ref, content);
            sent += 1;
        }
        // After the kill, read whatever replies were already on the wire, until the close.
        let Some(reply) = client
            .try_expect(Duration::from_secs(10), &|f| f.event == "phx_reply")
            .await
        else {
            break;
        };
        let msg_ref = reply.msg_ref.as_str().expect("ref").to_owned();
        let content = in_flight
            .remove(&msg_ref)
            .expect("a reply to a message in flight");
        assert_eq!(reply.status(), Some("ok"), "{:?}", reply.response());
        let message = &reply.response()["message"];
        assert_eq!(message["content"], json!(content));
        acked.push((message["id"].as_i64().expect("id"), content));
        if !killed && acked.len() >= KILL_AFTER_ACKS {
            server.kill();
            killed = true;
        }
    }
    assert!(killed, "the server was killed mid-stream");
    assert!(acked.len() >= KILL_AFTER_ACKS);
    assert!(
        sent > acked.len(),
        "messages were still in flight at the kill"
    );

    // Restart on the same database: every acknowledged message is there, once.
    let server = serve(dir.path(), &db.url, &key);
    let t = TestServer::at(server.url.clone(), db, config);
    let resp = t
        .get(
            &format!("/api/v1/conversations/{conv}/messages?limit=100"),
            Some(&ta),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    assert_eq!(resp.body["meta"]["has_more"], json!(false));
    let stored: Vec<(i64, String)> = resp.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|m| {
            (
                m["id"].as_i64().expect("id"),
                m["content"].as_str().expect("content").to_owned(),
            )
        })
        .collect();
    for message in &acked {
        assert!(
            stored.contains(message),
            "acknowledged {message:?} was lost"
        );
    }
    let distinct: HashSet<&String> = stored.iter().map(|(_, c)| c).collect();
    assert_eq!(distinct.len(), stored.len(), "no message stored twice");
    assert!(stored.len() <= sent, "only what was sent");
}
