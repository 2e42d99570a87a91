//! The conversations REST API: participants only, 201/200 on open, history pages, and a posted
//! message broadcast on `conversation:<id>` once committed.

use serde_json::json;

use crate::support::TestServer;

#[tokio::test]
async fn conversations_over_rest() {
    let t = TestServer::start().await;
    let (a, ta) = t.user("a@example.com").await;
    let (b, tb) = t.user("b@example.com").await;
    let (_, tc) = t.user("c@example.com").await;

    let resp = t
        .post(
            "/api/v1/conversations",
            Some(&ta),
            json!({"recipient_id": b}),
        )
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text);
    let id = resp.body["data"]["id"].as_i64().expect("id");
    assert_eq!(
        resp.body["data"]["participants"],
        json!([a.min(b), a.max(b)])
    );
    let again = t
        .post(
            "/api/v1/conversations",
            Some(&tb),
            json!({"recipient_id": a}),
        )
        .await;
    assert_eq!(
        (again.status, again.body["data"]["id"].as_i64()),
        (200, Some(id)),
        "the same conversation, 200"
    );
    t.post(
        "/api/v1/conversations",
        Some(&ta),
        json!({"recipient_id": 999999}),
    )
    .await
    .assert_json_error(404);
    let resp = t
        .post(
            "/api/v1/conversations",
            Some(&ta),
            json!({"recipient_id": a}),
        )
        .await;
    assert_eq!(
        resp.assert_json_error(422)["recipient_id"],
        json!(["can't be yourself"])
    );
    t.post(
        "/api/v1/conversations",
        Some(&ta),
        json!({"recipient_id": "b"}),
    )
    .await
    .assert_json_error(422);
    t.get("/api/v1/conversations", None)
        .await
        .assert_json_error(401);

    // Outsiders see nothing: 404, as if it did not exist.
    let path = format!("/api/v1/conversations/{id}");
    t.get(&path, Some(&tc)).await.assert_json_error(404);
    t.get(&format!("{path}/messages"), Some(&tc))
        .await
        .assert_json_error(404);
    t.post(
        &format!("{path}/messages"),
        Some(&tc),
        json!({"content": "hi"}),
    )
    .await
    .assert_json_error(404);
    assert_eq!(t.get(&path, Some(&tb)).await.status, 200);

    // Messages: 201, broadcast after commit, history pages.
    let mut live = t
        .server()
        .runtime()
        .pubsub()
        .subscribe(&format!("conversation:{id}"))
        .await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let token = if i % 2 == 0 { &ta } else { &tb };
        let resp = t
            .post(
                &format!("{path}/messages"),
                Some(token),
                json!({"content": format!("m{i}")}),
            )
            .await;
        assert_eq!(resp.status, 201, "{}", resp.text);
        ids.push(resp.body["data"]["id"].as_i64().expect("id"));
        let broadcast = tokio::time::timeout(std::time::Duration::from_secs(5), live.recv())
            .await
            .expect("live")
            .expect("broadcast");
        assert_eq!(broadcast.event, "message:new");
        assert_eq!(
            broadcast
                .payload
                .as_json()
                .map(|p| p["message"]["id"].clone()),
            Some(json!(ids[i]))
        );
    }
    let resp = t
        .post(
            &format!("{path}/messages"),
            Some(&ta),
            json!({"content": "  "}),
        )
        .await;
    assert_eq!(
        resp.assert_json_error(422)["content"],
        json!(["can't be blank"])
    );

    let page = t.get(&format!("{path}/messages?limit=3"), Some(&tb)).await;
    let got: Vec<i64> = page.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|m| m["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(
        (got, page.body["meta"]["has_more"].clone()),
        (ids[4..].to_vec(), json!(true))
    );
    let page = t
        .get(
            &format!("{path}/messages?limit=3&before={}", ids[4]),
            Some(&tb),
        )
        .await;
    let got: Vec<i64> = page.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|m| m["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(got, ids[1..4].to_vec());
    let page = t
        .get(&format!("{path}/messages?after={}", ids[5]), Some(&tb))
        .await;
    assert_eq!(page.body["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(page.body["meta"]["has_more"], json!(false));
    for bad in ["limit=0", "limit=101", "before=x", "after=-1"] {
        t.get(&format!("{path}/messages?{bad}"), Some(&tb))
            .await
            .assert_json_error(422);
    }

    let list = t.get("/api/v1/conversations", Some(&tb)).await;
    assert_eq!(list.body["data"][0]["id"], json!(id));
    assert_eq!(list.body["data"][0]["last_message"]["content"], "m6");
}
