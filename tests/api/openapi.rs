//! `GET /api/openapi.json`: an OpenAPI 3.1 document that describes exactly the routes the
//! server answers, with the bearer scheme, pagination parameters and error responses. (That
//! the server's answers conform to it is the schemathesis run's job, `.ci/schemathesis.sh`.)

use std::collections::BTreeSet;

use fawkes::web::router::Router;
use serde_json::Value;

use crate::support::TestServer;

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// The document, fetched from a real server.
async fn document(t: &TestServer) -> Value {
    let resp = t.get("/api/openapi.json", None).await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    assert!(
        resp.header("content-type")
            .is_some_and(|v| v.starts_with("application/json")),
        "{:?}",
        resp.header("content-type")
    );
    resp.body
}

/// Every (path, method) the document has an operation for.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let paths = doc["paths"].as_object().expect("paths");
    let mut found = BTreeSet::new();
    for (path, item) in paths {
        for method in item.as_object().expect("path item").keys() {
            let method = method.to_ascii_uppercase();
            assert!(METHODS.contains(&method.as_str()), "{method} {path}");
            found.insert((path.clone(), method));
        }
    }
    found
}

fn routes(router: &Router) -> BTreeSet<(String, String)> {
    router
        .routes()
        .map(|(path, method)| (path.to_owned(), method.to_string()))
        .collect()
}

/// `template` with its parameters filled in.
fn concrete(template: &str) -> String {
    template.replace("{id}", "1").replace("{name}", "lobby")
}

#[tokio::test]
async fn the_document_describes_exactly_the_routes_the_server_answers() {
    let t = TestServer::start().await;
    let doc = document(&t).await;
    let documented = operations(&doc);
    let served = routes(&Router::new(false));
    assert_eq!(
        documented.difference(&served).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "documented, not routed"
    );
    assert_eq!(
        served.difference(&documented).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "routed, not documented"
    );

    // The router's table is what the server really does: every documented method of a path is
    // answered by something other than 405, every other one 405 with the documented methods
    // in `Allow`. (No token and no body: nothing changes.)
    let paths: BTreeSet<&String> = documented.iter().map(|(path, _)| path).collect();
    for path in paths {
        let allowed: Vec<&str> = METHODS
            .into_iter()
            .filter(|m| documented.contains(&(path.clone(), (*m).to_owned())))
            .collect();
        for method in METHODS {
            let resp = t.call(method, &concrete(path), None, None).await;
            if allowed.contains(&method) {
                assert_ne!(resp.status, 405, "{method} {path}: {}", resp.text);
                assert_ne!(resp.status, 404, "{method} {path}: {}", resp.text);
            } else {
                resp.assert_json_error(405);
                assert_eq!(
                    resp.header("allow"),
                    Some(allowed.join(", ").as_str()),
                    "{method} {path}"
                );
            }
        }
    }

    // Only the development routes are left out (see `web::openapi`).
    let dev = routes(&Router::new(true));
    assert_eq!(
        dev.difference(&documented).cloned().collect::<Vec<_>>(),
        vec![("/dev/mailbox".to_owned(), "GET".to_owned())]
    );
}

/// The value `reference` (`#/components/...`) points at in `doc`.
fn resolve<'a>(doc: &'a Value, reference: &str) -> &'a Value {
    let pointer = reference.strip_prefix('#').expect("a local reference");
    doc.pointer(pointer)
        .unwrap_or_else(|| panic!("{reference} resolves to nothing"))
}

/// Every `$ref` anywhere under `value`.
fn references<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("$ref") {
                found.push(reference);
            }
            map.values().for_each(|v| references(v, found));
        }
        Value::Array(items) => items.iter().for_each(|v| references(v, found)),
        _ => {}
    }
}

/// The response `status` of `operation`, its reference followed.
fn response<'a>(doc: &'a Value, operation: &'a Value, status: &str) -> Option<&'a Value> {
    let response = operation["responses"].get(status)?;
    Some(match response["$ref"].as_str() {
        Some(reference) => resolve(doc, reference),
        None => response,
    })
}

fn parameter_names(operation: &Value) -> Vec<&str> {
    operation["parameters"]
        .as_array()
        .map(|params| params.iter().filter_map(|p| p["name"].as_str()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn the_document_is_openapi_3_1_with_bearer_auth_pagination_and_error_shapes() {
    let t = TestServer::start().await;
    let doc = document(&t).await;
    let version = doc["openapi"].as_str().expect("openapi");
    assert!(version.starts_with("3.1."), "{version}");
    assert_eq!(doc["info"]["title"], "Fawkes");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"],
        serde_json::json!({
            "type": "http",
            "scheme": "bearer",
            "description": "The access token of `POST /api/v1/sessions` (socket tokens are refused here)"
        })
    );
    for schema in [
        "User",
        "PublicUser",
        "UserView",
        "Conversation",
        "Message",
        "SocketToken",
        "ErrorBody",
        "ValidationBody",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "schema {schema}"
        );
    }
    let mut found = Vec::new();
    references(&doc, &mut found);
    assert!(found.len() > 50, "{} references", found.len());
    for reference in found {
        resolve(&doc, reference);
    }

    // Authentication: every operation but the probes, this document, registration and login.
    let public = ["health", "ready", "openapi", "register", "log_in"];
    let probes = ["health", "ready"];
    let mut seen = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            let id = operation["operationId"].as_str().expect("operationId");
            assert!(seen.insert(id.to_owned()), "operationId {id} twice");
            let secured = operation["security"] == serde_json::json!([{"bearer": []}]);
            assert_eq!(secured, !public.contains(&id), "{method} {path}: security");
            if secured {
                let unauthorized = response(&doc, operation, "401").expect("401");
                assert!(
                    unauthorized["headers"]["WWW-Authenticate"].is_object(),
                    "{id}"
                );
            }
            // The rate limiter answers every request but the probes' with 429.
            match response(&doc, operation, "429") {
                Some(limited) => {
                    assert!(!probes.contains(&id), "{id}");
                    assert!(limited["headers"]["Retry-After"].is_object(), "{id}");
                    assert_eq!(
                        limited["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody"
                    );
                }
                None => assert!(probes.contains(&id), "{id} has no 429"),
            }
            // The request timeout and a server failure can answer any operation.
            for status in ["408", "500"] {
                assert!(response(&doc, operation, status).is_some(), "{id} {status}");
            }
            // A JSON body: 400, 413, 415 and 422 are possible.
            if operation.get("requestBody").is_some() {
                for status in ["400", "413", "415", "422"] {
                    assert!(response(&doc, operation, status).is_some(), "{id} {status}");
                }
                let invalid = response(&doc, operation, "422").expect("422");
                assert_eq!(
                    invalid["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ValidationBody"
                );
            }
        }
    }

    // Pagination.
    let list_users = &doc["paths"]["/api/v1/users"]["get"];
    assert_eq!(parameter_names(list_users), ["limit", "after"]);
    let limit = &list_users["parameters"][0]["schema"];
    assert_eq!(
        (&limit["minimum"], &limit["maximum"]),
        (&1.into(), &100.into())
    );
    let history = &doc["paths"]["/api/v1/conversations/{id}/messages"]["get"];
    assert_eq!(parameter_names(history), ["id", "limit", "before", "after"]);

    // Links from what creates a record to what reads it (schemathesis follows them), each to
    // an operation that exists.
    for item in doc["paths"].as_object().expect("paths").values() {
        for operation in item.as_object().expect("path item").values() {
            for response in operation["responses"]
                .as_object()
                .expect("responses")
                .values()
            {
                for link in response["links"]
                    .as_object()
                    .into_iter()
                    .flat_map(|l| l.values())
                {
                    let target = link["operationId"].as_str().expect("operationId");
                    assert!(seen.contains(target), "a link to {target}");
                }
            }
        }
    }
    let register = &doc["paths"]["/api/v1/users"]["post"];
    assert_eq!(
        register["responses"]["201"]["links"]["GetUser"],
        serde_json::json!({"operationId": "get_user", "parameters": {"id": "$response.body#/data/id"}})
    );
    let open = &doc["paths"]["/api/v1/conversations"]["post"];
    for status in ["200", "201"] {
        let links = open["responses"][status]["links"]
            .as_object()
            .expect("links");
        let targets: BTreeSet<&str> = links
            .values()
            .filter_map(|link| link["operationId"].as_str())
            .collect();
        assert_eq!(
            targets,
            BTreeSet::from(["get_conversation", "list_messages", "post_message"])
        );
    }

    // Every error status the server sends has its response, with its headers.
    let responses = &doc["components"]["responses"];
    for (name, header) in [
        ("BadRequest", None),
        ("Unauthorized", Some("WWW-Authenticate")),
        ("Forbidden", None),
        ("NotFound", None),
        ("MethodNotAllowed", Some("Allow")),
        ("RequestTimeout", None),
        ("PayloadTooLarge", None),
        ("UnsupportedMediaType", None),
        ("UnprocessableEntity", None),
        ("TooManyRequests", Some("Retry-After")),
        ("InternalServerError", None),
        ("ServiceUnavailable", None),
    ] {
        assert!(responses[name].is_object(), "{name}");
        if let Some(header) = header {
            assert!(responses[name]["headers"][header].is_object(), "{name}");
        }
    }
}
