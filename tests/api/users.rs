//! Registration, profiles, listing, update and deletion.

use entity::{mail, user};
use sea_orm::{Database, EntityTrait};
use serde_json::json;

use crate::support::TestServer;

fn ada(email: &str) -> serde_json::Value {
    json!({"user": {"name": "Ada", "subname": "Lovelace", "email": email, "job": "Engineer"}})
}

#[tokio::test]
async fn register_with_a_password_returns_201_with_location_and_no_secret() {
    let t = TestServer::start().await;
    let mut body = ada("ada@example.com");
    body["user"]["password"] = json!("a very long password");
    let resp = t.post("/api/v1/users", None, body).await;
    assert_eq!(resp.status, 201, "{}", resp.text);
    let data = &resp.body["data"];
    let id = data["id"].as_i64().expect("id");
    assert_eq!(
        resp.header("location"),
        Some(format!("/api/v1/users/{id}").as_str())
    );
    assert_eq!(data["name"], "Ada");
    assert_eq!(data["subname"], "Lovelace");
    assert_eq!(data["email"], "ada@example.com");
    assert_eq!(data["job"], "Engineer");
    assert!(data["inserted_at"].is_string() && data["updated_at"].is_string());
    assert!(
        data.get("password").is_none(),
        "no password echoed: {}",
        resp.text
    );
    assert!(!resp.text.contains("argon2"), "no hash exposed");

    let token = t.login("ada@example.com", "a very long password").await;
    let shown = t
        .get(resp.header("location").expect("location"), Some(&token))
        .await;
    assert_eq!(shown.status, 200);
    assert_eq!(shown.body["data"], *data);
}

#[tokio::test]
async fn register_without_a_password_generates_one_returns_it_once_and_mails_it() {
    let t = TestServer::start().await;
    let resp = t.post("/api/v1/users", None, ada("gen@example.com")).await;
    assert_eq!(resp.status, 201, "{}", resp.text);
    let password = resp.body["data"]["password"]
        .as_str()
        .expect("generated password")
        .to_owned();
    assert!(password.len() >= 16, "strong password: {password}");
    let id = resp.body["data"]["id"].as_i64().expect("id");

    // It works, and it is shown only once.
    let token = t.login("gen@example.com", &password).await;
    let me = t.get("/api/v1/me", Some(&token)).await;
    assert!(me.body["data"].get("password").is_none());
    let shown = t.get(&format!("/api/v1/users/{id}"), Some(&token)).await;
    assert!(!shown.text.contains(&password));

    // It was mailed (outbox transport, read back through the dev mailbox).
    let mail = t.wait_for_mail("gen@example.com", |_| true).await;
    assert_eq!(mail["status"], "stored");
    assert_eq!(mail["transport"], "outbox");
    assert!(mail["body"].as_str().expect("body").contains(&password));

    // Nothing stores it in clear: not the user row, not the mail record.
    let db = Database::connect(&t.db.url).await.expect("db");
    let row = user::Entity::find_by_id(id)
        .one(&db)
        .await
        .expect("query")
        .expect("row");
    assert!(
        row.password_hash.starts_with("$argon2id$"),
        "{}",
        row.password_hash
    );
    assert!(!row.password_hash.contains(&password));
    let mails = mail::Entity::find().all(&db).await.expect("mails");
    assert_eq!(mails.len(), 1);
    assert!(
        !mails[0].body_sealed.contains(&password),
        "mail body sealed"
    );
    assert!(mails[0].body_sealed.starts_with("v4.local."));
}

#[tokio::test]
async fn registration_validation_errors_are_422_per_field() {
    let t = TestServer::start().await;
    let resp = t.post("/api/v1/users", None, json!({"user": {}})).await;
    let errors = resp.assert_json_error(422);
    for field in ["name", "subname", "email", "job"] {
        assert_eq!(
            errors[field],
            json!(["can't be blank"]),
            "{field}: {}",
            resp.text
        );
    }

    let resp = t
        .post(
            "/api/v1/users",
            None,
            json!({"user": {"name": "x".repeat(101), "subname": 7, "email": "not-an-email", "job": "  ", "password": "short"}}),
        )
        .await;
    let errors = resp.assert_json_error(422);
    assert_eq!(
        errors["name"],
        json!(["should be at most 100 character(s)"])
    );
    assert_eq!(errors["subname"], json!(["is invalid"]));
    assert_eq!(errors["email"], json!(["has invalid format"]));
    assert_eq!(
        errors["password"],
        json!(["should be at least 12 character(s)"])
    );

    let resp = t
        .post("/api/v1/users", None, json!({"user": {"name": "A", "subname": "B", "email": format!("{}@x.io", "a".repeat(160)), "job": "J"}}))
        .await;
    assert_eq!(
        resp.assert_json_error(422)["email"],
        json!(["should be at most 160 character(s)"])
    );

    // Nothing was created by any of these.
    let (_, token) = t.user("only@example.com").await;
    let list = t.get("/api/v1/users", Some(&token)).await;
    assert_eq!(list.body["data"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn duplicate_email_is_rejected_even_when_case_differs() {
    let t = TestServer::start().await;
    assert_eq!(
        t.post("/api/v1/users", None, ada("Dup@Example.com"))
            .await
            .status,
        201
    );
    for email in ["Dup@Example.com", "dup@example.com", "DUP@EXAMPLE.COM"] {
        let resp = t.post("/api/v1/users", None, ada(email)).await;
        assert_eq!(
            resp.body,
            json!({"errors": {"email": ["has already been taken"]}}),
            "{email}"
        );
        assert_eq!(resp.status, 422);
    }
    // Updating into a taken address is refused the same way.
    let (id, token) = t.user("other@example.com").await;
    let resp = t
        .call(
            "PATCH",
            &format!("/api/v1/users/{id}"),
            Some(&token),
            Some(json!({"user": {"email": "dUP@example.com", "current_password": "correct horse battery"}})),
        )
        .await;
    assert_eq!(
        resp.body,
        json!({"errors": {"email": ["has already been taken"]}})
    );
}

#[tokio::test]
async fn login_email_is_case_insensitive() {
    let t = TestServer::start().await;
    let (_, password) = t.register("Mixed.Case@Example.com").await;
    t.login("mixed.case@example.COM", &password).await;
}

#[tokio::test]
async fn users_are_listed_with_cursor_pagination() {
    let t = TestServer::start().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(t.register(&format!("u{i}@example.com")).await.0);
    }
    let token = t.login("u0@example.com", "correct horse battery").await;

    let mut seen = Vec::new();
    let mut path = "/api/v1/users?limit=2".to_owned();
    let mut pages = 0;
    loop {
        let resp = t.get(&path, Some(&token)).await;
        assert_eq!(resp.status, 200, "{}", resp.text);
        let page: Vec<i64> = resp.body["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|u| u["id"].as_i64().expect("id"))
            .collect();
        assert!(page.len() <= 2);
        seen.extend(page);
        pages += 1;
        match resp.body["meta"]["next"].as_str() {
            Some(next) => path = format!("/api/v1/users?limit=2&after={next}"),
            None => {
                assert!(resp.body["meta"]["next"].is_null());
                break;
            }
        }
    }
    assert_eq!(seen, ids);
    assert_eq!(pages, 3);

    let all = t.get("/api/v1/users", Some(&token)).await;
    assert_eq!(all.body["data"].as_array().map(Vec::len), Some(5));
    assert!(all.body["meta"]["next"].is_null());
    let last = t
        .get(&format!("/api/v1/users?after={}", ids[4]), Some(&token))
        .await;
    assert_eq!(last.body, json!({"data": [], "meta": {"next": null}}));

    for bad in ["limit=0", "limit=101", "limit=abc", "limit=-1"] {
        let resp = t.get(&format!("/api/v1/users?{bad}"), Some(&token)).await;
        assert_eq!(
            resp.assert_json_error(422)["limit"],
            json!(["must be an integer from 1 to 100"]),
            "{bad}"
        );
    }
    let resp = t.get("/api/v1/users?after=xyz", Some(&token)).await;
    assert_eq!(resp.assert_json_error(422)["after"], json!(["is invalid"]));
    assert_eq!(
        t.get("/api/v1/users?limit=100", Some(&token)).await.status,
        200
    );
    t.get("/api/v1/users", None).await.assert_json_error(401);
}

#[tokio::test]
async fn show_user_needs_auth_and_answers_404_for_unknown_ids() {
    let t = TestServer::start().await;
    let (id, token) = t.user("show@example.com").await;
    t.get(&format!("/api/v1/users/{id}"), None)
        .await
        .assert_json_error(401);
    assert_eq!(
        t.get(&format!("/api/v1/users/{id}"), Some(&token))
            .await
            .status,
        200
    );
    for path in [
        "/api/v1/users/999999",
        "/api/v1/users/abc",
        "/api/v1/users/1.5",
    ] {
        let resp = t.get(path, Some(&token)).await;
        resp.assert_json_error(404);
        assert_eq!(resp.body, crate::support::detail("Not Found"), "{path}");
    }
}

#[tokio::test]
async fn an_email_address_is_shown_only_to_its_owner() {
    let t = TestServer::start().await;
    let (ann, ann_token) = t.user("ann@example.com").await;
    let (bob, _) = t.user("bob@example.com").await;
    let public = |u: &serde_json::Value| {
        let mut keys: Vec<&str> = u
            .as_object()
            .expect("user")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        keys == ["id", "job", "name", "subname"]
    };

    let other = t
        .get(&format!("/api/v1/users/{bob}"), Some(&ann_token))
        .await;
    assert_eq!(other.status, 200);
    assert!(public(&other.body["data"]), "{}", other.text);
    assert!(!other.text.contains("bob@example.com"));
    let own = t
        .get(&format!("/api/v1/users/{ann}"), Some(&ann_token))
        .await;
    assert_eq!(own.body["data"]["email"], "ann@example.com");

    let list = t.get("/api/v1/users", Some(&ann_token)).await;
    assert!(!list.text.contains("bob@example.com"), "{}", list.text);
    let users = list.body["data"].as_array().expect("users");
    let (mine, others): (Vec<_>, Vec<_>) = users.iter().partition(|u| u["id"] == ann);
    assert_eq!(mine[0]["email"], "ann@example.com");
    assert_eq!(others.len(), 1);
    assert!(public(others[0]), "{}", list.text);
    assert_eq!(
        t.get("/api/v1/me", Some(&ann_token)).await.body["data"]["email"],
        "ann@example.com"
    );
}

#[tokio::test]
async fn me_returns_the_caller() {
    let t = TestServer::start().await;
    let (id, token) = t.user("me@example.com").await;
    let resp = t.get("/api/v1/me", Some(&token)).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body["data"]["id"], id);
    assert_eq!(resp.body["data"]["email"], "me@example.com");
}

#[tokio::test]
async fn a_user_may_update_only_themself() {
    let t = TestServer::start().await;
    let (me, token) = t.user("self@example.com").await;
    let (other, _) = t.user("other@example.com").await;

    let resp = t
        .call(
            "PATCH",
            &format!("/api/v1/users/{me}"),
            Some(&token),
            Some(json!({"user": {"job": "Captain", "name": " Grace "}})),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    assert_eq!(resp.body["data"]["job"], "Captain");
    assert_eq!(resp.body["data"]["name"], "Grace");
    assert_eq!(
        resp.body["data"]["subname"], "User",
        "untouched fields kept"
    );

    let resp = t
        .call(
            "PATCH",
            &format!("/api/v1/users/{other}"),
            Some(&token),
            Some(json!({"user": {"job": "Hacked"}})),
        )
        .await;
    assert_eq!(resp.body, crate::support::detail("Forbidden"));
    resp.assert_json_error(403);
    let other_now = t.get(&format!("/api/v1/users/{other}"), Some(&token)).await;
    assert_eq!(other_now.body["data"]["job"], "Tester");

    let resp = t
        .call(
            "PATCH",
            "/api/v1/users/999999",
            Some(&token),
            Some(json!({"user": {"job": "X"}})),
        )
        .await;
    resp.assert_json_error(404);

    let resp = t
        .call(
            "PATCH",
            &format!("/api/v1/users/{me}"),
            Some(&token),
            Some(json!({"user": {"name": "", "password": "tiny"}})),
        )
        .await;
    let errors = resp.assert_json_error(422);
    assert_eq!(errors["name"], json!(["can't be blank"]));
    assert_eq!(
        errors["password"],
        json!(["should be at least 12 character(s)"])
    );

    // A password change takes effect.
    let resp = t
        .call(
            "PATCH",
            &format!("/api/v1/users/{me}"),
            Some(&token),
            Some(json!({"user": {"password": "a brand new password", "current_password": "correct horse battery"}})),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    t.login("self@example.com", "a brand new password").await;
    let old = t
        .post(
            "/api/v1/sessions",
            None,
            json!({"email": "self@example.com", "password": "correct horse battery"}),
        )
        .await;
    old.assert_json_error(401);
}

#[tokio::test]
async fn a_user_may_delete_only_themself_and_their_tokens_die_with_them() {
    let t = TestServer::start().await;
    let (me, token) = t.user("leaving@example.com").await;
    let (other, other_token) = t.user("staying@example.com").await;

    let resp = t
        .call(
            "DELETE",
            &format!("/api/v1/users/{other}"),
            Some(&token),
            None,
        )
        .await;
    resp.assert_json_error(403);
    t.call("DELETE", "/api/v1/users/999999", Some(&token), None)
        .await
        .assert_json_error(404);

    let resp = t
        .call("DELETE", &format!("/api/v1/users/{me}"), Some(&token), None)
        .await;
    assert_eq!(resp.status, 204);
    assert!(resp.text.is_empty());

    // The deleted user's token is refused everywhere, even where no user lookup happens.
    t.get("/api/v1/users", Some(&token))
        .await
        .assert_json_error(401);
    t.get("/api/v1/me", Some(&token))
        .await
        .assert_json_error(401);
    t.get(&format!("/api/v1/users/{me}"), Some(&other_token))
        .await
        .assert_json_error(404);
    let login = t
        .post(
            "/api/v1/sessions",
            None,
            json!({"email": "leaving@example.com", "password": "correct horse battery"}),
        )
        .await;
    login.assert_json_error(401);
    // The other user is unaffected.
    assert_eq!(t.get("/api/v1/me", Some(&other_token)).await.status, 200);

    // And the revocation survives a restart.
    let t = t.restart().await;
    t.get("/api/v1/users", Some(&token))
        .await
        .assert_json_error(401);
    assert_eq!(t.get("/api/v1/users", Some(&other_token)).await.status, 200);
}

/// Schemathesis finding 1: U+0000 in a name, a login e-mail or a message answered 500 on
/// PostgreSQL (it cannot store or compare one); now a 422 (401 for the login), on every
/// database.
#[tokio::test]
async fn text_holding_nul_is_refused_not_a_server_error() {
    let t = TestServer::start().await;
    let mut body = ada("nul@example.com");
    body["user"]["name"] = json!("A\u{0}da");
    let resp = t.post("/api/v1/users", None, body).await;
    let errors = resp.assert_json_error(422);
    assert_eq!(errors["name"], json!(["can't contain the NUL character"]));

    let (id, token) = t.user("ada@example.com").await;
    let resp = t
        .post(
            "/api/v1/sessions",
            None,
            json!({"email": "ada\u{0}@example.com", "password": "correct horse battery"}),
        )
        .await;
    resp.assert_json_error(401);

    let resp = t
        .call(
            "PATCH",
            &format!("/api/v1/users/{id}"),
            Some(&token),
            Some(json!({"user": {"job": "En\u{0}gineer"}})),
        )
        .await;
    let errors = resp.assert_json_error(422);
    assert_eq!(errors["job"], json!(["can't contain the NUL character"]));

    let (other, _) = t.user("bob@example.com").await;
    let resp = t
        .post(
            "/api/v1/conversations",
            Some(&token),
            json!({"recipient_id": other}),
        )
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text);
    let conversation = resp.body["data"]["id"].as_i64().expect("id");
    let resp = t
        .post(
            &format!("/api/v1/conversations/{conversation}/messages"),
            Some(&token),
            json!({"content": "hel\u{0}lo"}),
        )
        .await;
    let errors = resp.assert_json_error(422);
    assert_eq!(
        errors["content"],
        json!(["can't contain the NUL character"])
    );
    let resp = t
        .post(
            "/api/v1/rooms/lobby/messages",
            Some(&token),
            json!({"body": "hel\u{0}lo"}),
        )
        .await;
    let errors = resp.assert_json_error(422);
    assert_eq!(errors["body"], json!(["can't contain the NUL character"]));

    // Nothing was stored, and the user is as before.
    let me = t.get("/api/v1/me", Some(&token)).await;
    assert_eq!(me.body["data"]["job"], "Tester");
    let history = t
        .get(
            &format!("/api/v1/conversations/{conversation}/messages"),
            Some(&token),
        )
        .await;
    assert_eq!(history.body["data"], json!([]));
}
