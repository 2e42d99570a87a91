//! Cluster mode over real processes: three `fawkes serve` sharing one database and one Redis,
//! official phoenix.js clients on each (`tests/js/cluster.mjs`), nodes killed, stopped and
//! restarted, Redis stopped and started again.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::cluster::{Cluster, Script, User};

/// The script's configuration: every node's socket and HTTP URL, the users, and `extra`.
fn config(cluster: &Cluster, nodes: usize, users: &[(&str, Value)], extra: Value) -> Value {
    let mut config = json!({
        "nodes": (1..=nodes).map(|n| cluster.socket_url(n)).collect::<Vec<_>>(),
        "http": (1..=nodes).map(|n| cluster.url(n).to_owned()).collect::<Vec<_>>(),
        "users": users
            .iter()
            .map(|(name, user)| ((*name).to_owned(), user.clone()))
            .collect::<serde_json::Map<_, _>>(),
    });
    if let (Some(config), Value::Object(extra)) = (config.as_object_mut(), extra) {
        config.extend(extra);
    }
    config
}

/// Users registered through node-1, by name.
async fn users(cluster: &Cluster, names: &[&str]) -> Vec<User> {
    let mut users = Vec::new();
    for name in names {
        users.push(cluster.user(1, name).await);
    }
    users
}

fn named<'a>(names: &[&'a str], users: &[User]) -> Vec<(&'a str, Value)> {
    names
        .iter()
        .copied()
        .zip(users.iter().map(User::json))
        .collect()
}

/// Runs a scenario without steps to its end.
async fn run(cluster: &mut Cluster, mode: &str, config: &Value) -> String {
    Script::start(mode, config).await.finish(cluster).await
}

#[tokio::test]
async fn broadcasts_presence_and_direct_pushes_cross_the_nodes() {
    let mut cluster = Cluster::start(3, &[]).await;
    let names = ["A", "B", "C", "X", "Y"];
    let all = users(&cluster, &names).await;
    let users = named(&names, &all);
    let (x, y) = (&all[3], &all[4]);
    let conversation = cluster.conversation(1, &x.token, y.id).await;
    let config = config(&cluster, 3, &users, json!({ "conversation": conversation }));

    let output = run(&mut cluster, "broadcast", &config).await;
    assert!(output.contains("broadcast passed"), "{output}");
    let output = run(&mut cluster, "presence", &config).await;
    assert!(output.contains("presence passed"), "{output}");
    let output = run(&mut cluster, "direct", &config).await;
    assert!(output.contains("direct passed"), "{output}");
}

#[tokio::test]
async fn logging_out_or_deleting_the_account_on_one_node_closes_the_sockets_on_all() {
    let mut cluster = Cluster::start(3, &[]).await;
    let names = ["X", "W"];
    let all = users(&cluster, &names).await;
    let mut users = named(&names, &all);
    // A second session of X (logged in through node-2), which the logout must spare.
    let other = cluster.login(2, &all[0].email, &all[0].password).await;
    users[0].1["other"] = json!(other);
    let config = config(&cluster, 3, &users, json!({}));

    let output = run(&mut cluster, "logout", &config).await;
    assert!(output.contains("logout passed"), "{output}");
}

/// With the default timings: a node that dies without a word is dropped, and its clients'
/// presences with it, within the node timeout (15 s; the script allows 30 s).
#[tokio::test]
async fn a_killed_node_s_presences_leave_everywhere_and_do_not_come_back_with_it() {
    let mut cluster = Cluster::start(3, &[]).await;
    let names = ["A", "B", "C", "D"];
    let all = users(&cluster, &names).await;
    let config = config(&cluster, 3, &named(&names, &all), json!({}));

    let mut script = Script::start("sigkill", &config).await;
    script.step(&mut cluster, "kill node-3").await;
    cluster.kill(3);
    script.reply(json!({})).await;
    script.step(&mut cluster, "restart node-3").await;
    // B has left everywhere by now: node-3 is no member of the others any more.
    cluster.wait_members().await;
    cluster.restart(3).await;
    script.reply(json!({ "url": cluster.socket_url(3) })).await;
    let output = script.finish(&mut cluster).await;
    assert!(output.contains("sigkill passed"), "{output}");
}

/// A node stopping gracefully says goodbye: its presences leave at once, long before the
/// node timeout (60 s here) would drop them.
#[tokio::test]
async fn a_node_stopped_with_sigterm_says_goodbye() {
    let mut cluster = Cluster::start(3, &[("FAWKES_PUBSUB__NODE_TIMEOUT_MS", "60000")]).await;
    let names = ["A", "B", "C"];
    let all = users(&cluster, &names).await;
    let config = config(&cluster, 3, &named(&names, &all), json!({}));

    let mut script = Script::start("sigterm", &config).await;
    script.step(&mut cluster, "terminate node-3").await;
    cluster.terminate(3);
    script.reply(json!({})).await;
    let output = script.finish(&mut cluster).await;
    assert!(output.contains("sigterm passed"), "{output}");

    let status = cluster.wait_exit(3).await;
    assert!(status.success(), "node-3 exits cleanly: {status:?}");
    assert!(
        cluster
            .log(3)
            .iter()
            .any(|l| l.contains("shutdown complete")),
        "{}",
        cluster.all_logs()
    );
    // The others dropped node-3 from their members: its goodbye, since the timeout is 60 s
    // and `wait_members` allows 30.
    cluster.wait_members().await;
}

#[tokio::test]
async fn a_redis_outage_keeps_local_traffic_and_the_cluster_heals_afterwards() {
    // The adapter's debug lines show each failed reconnection attempt.
    let mut cluster = Cluster::start(2, &[("FAWKES_LOG", "info,fawkes_redis=debug")]).await;
    let names = ["X", "Y", "C"];
    let all = users(&cluster, &names).await;
    let conversation = cluster.conversation(1, &all[0].token, all[1].id).await;
    let config = config(
        &cluster,
        2,
        &named(&names, &all),
        json!({ "conversation": conversation }),
    );

    let mut script = Script::start("redis", &config).await;
    script.step(&mut cluster, "stop redis").await;
    cluster.stop_redis();
    for node in 1..=2 {
        cluster
            .wait_link(node, "disconnected", Duration::from_secs(10))
            .await;
    }
    script.reply(json!({})).await;
    script.step(&mut cluster, "start redis").await;
    // A long enough outage for reconnection attempts to fail (each logged at debug level).
    for node in 1..=2 {
        cluster
            .wait_log(node, "redis link still down", 2, Duration::from_secs(10))
            .await;
    }
    cluster.start_redis();
    for node in 1..=2 {
        cluster
            .wait_link(node, "connected", Duration::from_secs(10))
            .await;
    }
    cluster.wait_members().await;
    script.reply(json!({})).await;
    let output = script.finish(&mut cluster).await;
    assert!(output.contains("redis passed"), "{output}");

    // One warning per node for the one outage, however many reconnection attempts failed,
    // and one line when the link is back.
    for node in 1..=2 {
        for (what, line) in [
            ("lost", "redis link lost"),
            ("restored", "redis link restored"),
        ] {
            let lines: Vec<String> = cluster
                .log(node)
                .iter()
                .filter(|l| l.contains(line))
                .cloned()
                .collect();
            assert_eq!(
                lines.len(),
                1,
                "node-{node} logs once that the link is {what}: {lines:#?}\n{}",
                cluster.all_logs()
            );
        }
        let warning = cluster
            .log(node)
            .iter()
            .find(|l| l.contains("redis link lost"))
            .cloned()
            .unwrap_or_default();
        assert!(warning.contains("WARN"), "{warning}");
    }
}

/// The disconnect that a logout broadcasts to the other nodes is at most once: lost in a Redis
/// outage, the other nodes still close the revoked session's sockets once they read the
/// revocation from the database (every 5 s), and refuse its token.
#[tokio::test]
async fn a_logout_during_a_redis_outage_still_closes_the_sockets_on_the_other_node() {
    let mut cluster = Cluster::start(2, &[]).await;
    let x = cluster.user(1, "X").await;
    let url = format!(
        "{}/websocket?token={}&vsn=2.0.0",
        cluster.socket_url(2),
        x.token
    );
    let mut socket = fawkes::testing::WsClient::connect(&url)
        .await
        .expect("X connects to node-2");
    socket.join("room:lobby", json!({})).await;

    cluster.stop_redis();
    for node in 1..=2 {
        cluster
            .wait_link(node, "disconnected", Duration::from_secs(10))
            .await;
    }
    let resp = cluster
        .call(1, "DELETE", "/api/v1/sessions", Some(&x.token), None)
        .await;
    assert_eq!(resp.status, 204, "{}", resp.text);
    // `closed` waits a few seconds; the database is read every 5 s.
    let mut closed = None;
    for _ in 0..4 {
        if let Ok(close) = tokio::time::timeout(Duration::from_secs(5), socket.closed()).await {
            closed = Some(close);
            break;
        }
    }
    let (code, _) =
        closed.unwrap_or_else(|| panic!("node-2 closed X's socket\n{}", cluster.all_logs()));
    assert_eq!(code, 1001);
    let refused = fawkes::testing::WsClient::connect(&url).await;
    assert!(refused.is_err(), "node-2 refuses the revoked token");
    cluster.start_redis();
}

/// One LongPoll request to `base` (a node's HTTP URL): the JSON body it answers.
async fn longpoll(base: &str, method: &str, query: &str, body: &str) -> Value {
    let request = ::http::Request::builder()
        .method(method)
        .uri(format!("{base}/socket/longpoll?{query}"))
        .header("content-type", "application/x-ndjson")
        .body(body.to_owned().into())
        .expect("request");
    let response = crate::support::http::Client::new().send(request).await;
    assert_eq!(response.status, 200, "{}", response.text);
    response.body
}

/// Polls `base` with `token` until a message with `event` comes (at most 15 s).
async fn poll_until(base: &str, token: &str, event: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let answer = longpoll(base, "GET", &format!("token={token}&vsn=2.0.0"), "").await;
        assert!(
            matches!(answer["status"].as_i64(), Some(200 | 204)),
            "a live session's poll: {answer}"
        );
        let found = answer["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| serde_json::from_str::<Value>(m.as_str()?).ok())
            .find(|m| m[3] == event);
        if let Some(message) = found {
            return message;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no `{event}` within 15 s"
        );
    }
}

#[tokio::test]
async fn a_longpoll_session_gets_the_cluster_s_broadcasts_and_is_gone_on_another_node() {
    let cluster = Cluster::start(
        2,
        &[
            ("FAWKES_SOCKET__LONGPOLL", "true"),
            ("FAWKES_SOCKET__LONGPOLL_WINDOW_SECS", "2"),
        ],
    )
    .await;
    let ann = cluster.user(1, "Ann").await;
    let access = &ann.token;

    // A session on node 1, opened with the access token as a connect param (beside the
    // session token phoenix.js adds to the same query later), joined to a room.
    let opened = longpoll(
        cluster.url(1),
        "GET",
        &format!("token={access}&vsn=2.0.0"),
        "",
    )
    .await;
    assert_eq!(opened["status"], 410, "{opened}");
    let session = opened["token"]
        .as_str()
        .expect("a session token")
        .to_owned();
    let join = r#"["1","1","room:lp","phx_join",{}]"#;
    let posted = longpoll(cluster.url(1), "POST", &format!("token={session}"), join).await;
    assert_eq!(posted["status"], 200, "{posted}");
    let reply = poll_until(cluster.url(1), &session, "phx_reply").await;
    assert_eq!(reply[4]["status"], "ok", "{reply}");

    // A message posted on node 2 crosses Redis to the session on node 1.
    let request = ::http::Request::builder()
        .method("POST")
        .uri(format!("{}/api/v1/rooms/lp/messages", cluster.url(2)))
        .header("authorization", format!("Bearer {access}"))
        .header("content-type", "application/json")
        .body(json!({"body": "from node 2"}).to_string().into())
        .expect("request");
    let posted = crate::support::http::Client::new().send(request).await;
    assert_eq!(posted.status, 202, "{}", posted.text);
    let message = poll_until(cluster.url(1), &session, "message:new").await;
    assert_eq!(message[4]["body"], "from node 2", "{message}");

    // The session is node 1's: node 2 answers 410 to its token and opens nothing for it, so
    // phoenix.js drops it and opens a session there with its next (tokenless) GET.
    for method in ["GET", "POST"] {
        let body = if method == "POST" { join } else { "" };
        let gone = longpoll(
            cluster.url(2),
            method,
            &format!("token={session}&vsn=2.0.0"),
            body,
        )
        .await;
        assert_eq!(gone, json!({"status": 410}), "{method} on node 2");
    }
    let reopened = longpoll(
        cluster.url(2),
        "GET",
        &format!("token={access}&vsn=2.0.0"),
        "",
    )
    .await;
    assert_eq!(reopened["status"], 410, "{reopened}");
    assert!(
        reopened["token"].is_string(),
        "a new session on node 2: {reopened}"
    );
    // Node 1's session is untouched.
    let still = longpoll(
        cluster.url(1),
        "GET",
        &format!("token={session}&vsn=2.0.0"),
        "",
    )
    .await;
    assert!(
        matches!(still["status"].as_i64(), Some(200 | 204)),
        "{still}"
    );
}
