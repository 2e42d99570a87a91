//! Rate limits keyed on the client address, driven from chosen 127.0.0.x source addresses:
//! registrations per address, and login limits one address cannot turn against a victim.

use std::net::IpAddr;

use fawkes::config::RateLimitConfig;
use serde_json::json;

use crate::support::{Resp, TestServer};

fn addr(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

async fn register_from(t: &TestServer, from: IpAddr, email: &str) -> Resp {
    let user = json!({"user": {"name": "N", "subname": "S", "email": email, "job": "J"}});
    t.call_from(from, "POST", "/api/v1/users", None, Some(user))
        .await
}

async fn login_from(t: &TestServer, from: IpAddr, email: &str, password: &str) -> Resp {
    let creds = json!({"email": email, "password": password});
    t.call_from(from, "POST", "/api/v1/sessions", None, Some(creds))
        .await
}

fn retry_after(resp: &Resp) -> u64 {
    resp.header("retry-after")
        .expect("retry-after")
        .parse()
        .expect("seconds")
}

#[tokio::test]
async fn registrations_are_limited_per_client_address() {
    let t = TestServer::start_with(|c| c.rate_limit.register_per_ip_per_minute = 3).await;
    for i in 0..3 {
        let resp = register_from(&t, addr(2), &format!("r{i}@example.com")).await;
        assert_eq!(resp.status, 201, "{}", resp.text);
    }
    // Nothing is created past the limit.
    let resp = register_from(&t, addr(2), "r3@example.com").await;
    resp.assert_json_error(429);
    assert!((1..=60).contains(&retry_after(&resp)));
    let login = login_from(&t, addr(2), "r3@example.com", "whatever at all").await;
    login.assert_json_error(401);
    // Another address is not affected.
    let resp = register_from(&t, addr(3), "r3@example.com").await;
    assert_eq!(resp.status, 201, "{}", resp.text);
}

#[tokio::test]
async fn wrong_passwords_from_one_address_do_not_lock_the_owner_out_elsewhere() {
    let t = TestServer::start_with(|c| {
        c.rate_limit = RateLimitConfig {
            register_per_ip_per_minute: 1000,
            ..RateLimitConfig::default()
        }
    })
    .await;
    let (_, password) = t.register("victim@example.com").await;
    let pair_limit = RateLimitConfig::default().login_per_email_per_minute;
    for i in 0..pair_limit + 2 {
        let resp = login_from(&t, addr(2), "victim@example.com", "a wrong guess!").await;
        let expected = if i < pair_limit { 401 } else { 429 };
        resp.assert_json_error(expected);
    }
    // The owner, from another address, logs in.
    let resp = login_from(&t, addr(3), "victim@example.com", &password).await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    // The guessing address stays limited for this e-mail, even with the right password...
    let resp = login_from(&t, addr(2), "VICTIM@example.com", &password).await;
    resp.assert_json_error(429);
    assert!((1..=60).contains(&retry_after(&resp)));
    // ...but not for another account.
    t.register("other@example.com").await;
    let resp = login_from(&t, addr(2), "other@example.com", &password).await;
    assert_eq!(resp.status, 200, "{}", resp.text);
}

#[tokio::test]
async fn many_addresses_together_hit_a_ceiling_with_a_lockout() {
    let t =
        TestServer::start_with(|c| c.rate_limit.login_per_email_all_addresses_per_minute = 3).await;
    let (_, password) = t.register("target@example.com").await;
    for last in 2..5 {
        login_from(&t, addr(last), "target@example.com", "a wrong guess!")
            .await
            .assert_json_error(401);
    }
    let resp = login_from(&t, addr(5), "target@example.com", "a wrong guess!").await;
    resp.assert_json_error(429);
    assert!(retry_after(&resp) >= 59, "a lockout of a minute first");
    // Locked for everyone for now, whatever the password.
    login_from(&t, addr(6), "target@example.com", &password)
        .await
        .assert_json_error(429);
    assert_eq!(
        login_from(&t, addr(6), "free@example.com", "a wrong guess!")
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn the_owner_still_logs_in_from_where_they_did_before_while_the_email_is_locked() {
    let t =
        TestServer::start_with(|c| c.rate_limit.login_per_email_all_addresses_per_minute = 3).await;
    let (_, password) = t.register("owner@example.com").await;
    // The owner logs in from home once (this counts towards the ceiling too).
    let home = addr(2);
    let resp = login_from(&t, home, "owner@example.com", &password).await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    // Many addresses together exhaust the e-mail's ceiling: it is locked.
    for last in 10..12 {
        login_from(&t, addr(last), "owner@example.com", "a wrong guess!")
            .await
            .assert_json_error(401);
    }
    for last in 12..20 {
        login_from(&t, addr(last), "owner@example.com", "a wrong guess!")
            .await
            .assert_json_error(429);
    }
    // The owner, from home, logs in anyway (the e-mail compared without case)...
    let resp = login_from(&t, home, "Owner@Example.com", &password).await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    // ...and a wrong password from there is judged, not locked out...
    login_from(&t, home, "owner@example.com", "a wrong guess!")
        .await
        .assert_json_error(401);
    // ...while an address that never logged in is refused, even with the right password.
    let resp = login_from(&t, addr(30), "owner@example.com", &password).await;
    resp.assert_json_error(429);
    assert!(retry_after(&resp) >= 1);
}

#[tokio::test]
async fn a_password_change_forgets_where_the_old_password_logged_in_from() {
    let t =
        TestServer::start_with(|c| c.rate_limit.login_per_email_all_addresses_per_minute = 3).await;
    let (id, password) = t.register("moved@example.com").await;
    // A login from "home" (counted towards the ceiling) makes home a known address...
    let home = addr(2);
    let resp = login_from(&t, home, "moved@example.com", &password).await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    let token = resp.body["data"]["token"]
        .as_str()
        .expect("token")
        .to_owned();
    // ...until the password changes (from home: its check is exempt, so not counted).
    let new_password = "a brand new password";
    let change = json!({"user": {"password": new_password, "current_password": password}});
    let path = format!("/api/v1/users/{id}");
    let resp = t
        .call_from(home, "PATCH", &path, Some(&token), Some(change))
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    // Many addresses lock the e-mail...
    for last in 10..12 {
        login_from(&t, addr(last), "moved@example.com", "a wrong guess!")
            .await
            .assert_json_error(401);
    }
    login_from(&t, addr(12), "moved@example.com", "a wrong guess!")
        .await
        .assert_json_error(429);
    // ...and home is locked out with everyone else: the old password's logins no longer make
    // it the owner's.
    login_from(&t, home, "moved@example.com", new_password)
        .await
        .assert_json_error(429);
}

#[tokio::test]
async fn registrations_are_limited_for_the_whole_node() {
    let t = TestServer::start_with(|c| c.rate_limit.register_per_minute = 3).await;
    for last in 2..5 {
        let resp = register_from(&t, addr(last), &format!("n{last}@example.com")).await;
        assert_eq!(resp.status, 201, "{}", resp.text);
    }
    // A fresh address is refused once the node's registrations for the minute are used up,
    // and nothing is created.
    let resp = register_from(&t, addr(5), "n5@example.com").await;
    resp.assert_json_error(429);
    assert!((1..=60).contains(&retry_after(&resp)));
    login_from(&t, addr(5), "n5@example.com", "whatever at all")
        .await
        .assert_json_error(401);
}

#[tokio::test]
async fn invalid_registrations_do_not_use_up_the_nodes_budget() {
    let t = TestServer::start_with(|c| c.rate_limit.register_per_minute = 3).await;
    // Many invalid bodies (a bad e-mail, a missing name) from a few addresses, each within its
    // own limit: far more than the node's budget.
    for last in 2..5 {
        for i in 0..5 {
            let resp = register_from(&t, addr(last), &format!("not an e-mail {i}")).await;
            resp.assert_json_error(422);
        }
        let nameless = json!({"user": {"subname": "S", "email": "x@example.com", "job": "J"}});
        t.call_from(addr(last), "POST", "/api/v1/users", None, Some(nameless))
            .await
            .assert_json_error(422);
    }
    // A valid registration from another address is still served.
    let resp = register_from(&t, addr(5), "valid@example.com").await;
    assert_eq!(resp.status, 201, "{}", resp.text);
}

#[tokio::test]
async fn one_address_gets_a_bounded_share_of_the_api() {
    let t = TestServer::start_with(|c| {
        c.rate_limit.requests_per_ip_per_second = 1;
        c.rate_limit.requests_burst_per_ip = 5;
    })
    .await;
    let (_, token) = t.user("a@example.com").await;
    let me = |from| t.call_from(from, "GET", "/api/v1/me", Some(&token), None);

    // The burst is served, then the address is refused until its rate allows again.
    for _ in 0..5 {
        let resp = me(addr(2)).await;
        assert_eq!(resp.status, 200, "{}", resp.text);
    }
    let mut refused = None;
    for _ in 0..50 {
        let resp = me(addr(2)).await;
        if resp.status == 429 {
            refused = Some(resp);
            break;
        }
    }
    let refused = refused.expect("one address is limited");
    refused.assert_json_error(429);
    assert!((1..=2).contains(&retry_after(&refused)));

    // Other addresses, and the probes, are not affected.
    let resp = me(addr(3)).await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    let health = t.call_from(addr(2), "GET", "/health", None, None).await;
    assert_eq!(health.status, 200);
}
