//! The browser client's static directory, served at `/` in `dev` only.

use fawkes::config::Environment;

use crate::support::TestServer;

/// A server in `env` serving `dir` as `web.static_dir`.
async fn serving(env: Environment, dir: &std::path::Path) -> TestServer {
    let dir = dir.to_path_buf();
    TestServer::start_with(move |c| {
        c.env = env;
        c.web.static_dir = dir;
    })
    .await
}

#[tokio::test]
async fn dev_serves_the_built_client_and_nothing_outside_its_directory() {
    let root = tempfile::tempdir().expect("tempdir");
    let dist = root.path().join("dist");
    std::fs::create_dir_all(dist.join("assets")).expect("mkdir");
    std::fs::write(
        dist.join("index.html"),
        "<!doctype html><title>chat</title>",
    )
    .expect("write");
    std::fs::write(dist.join("assets/app.js"), "console.log('hi')").expect("write");
    std::fs::write(root.path().join("secret.txt"), "outside").expect("write");
    let t = serving(Environment::Dev, &dist).await;

    let index = t.get("/", None).await;
    assert_eq!(index.status, 200, "{}", index.text);
    assert_eq!(index.text, "<!doctype html><title>chat</title>");
    assert!(
        index
            .header("content-type")
            .unwrap_or_default()
            .starts_with("text/html")
    );
    assert_eq!(index.header("x-content-type-options"), Some("nosniff"));
    let script = t.get("/assets/app.js", None).await;
    assert_eq!(script.status, 200);
    assert!(
        script
            .header("content-type")
            .unwrap_or_default()
            .contains("javascript")
    );
    assert_eq!(
        t.call("HEAD", "/assets/app.js", None, None).await.status,
        200
    );

    // Nothing outside the directory, nothing that is not there, no other method.
    for path in [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/assets/../../secret.txt",
        "/nope.js",
    ] {
        let response = t.get(path, None).await;
        assert_ne!(response.status, 200, "{path}: {}", response.text);
        assert!(!response.text.contains("outside"), "{path}");
    }
    assert_eq!(t.call("POST", "/", None, None).await.status, 404);

    // The API is the API's: its routes and their errors win over the site.
    assert_eq!(t.get("/api/v1/me", None).await.status, 401);
    assert_eq!(t.get("/health", None).await.status, 200);
    let unrouted = t.get("/api/v1/nope", None).await;
    assert_eq!(unrouted.status, 404);
    assert!(unrouted.body.is_object(), "a JSON error: {}", unrouted.text);
}

#[tokio::test]
async fn dev_without_a_build_says_how_to_build_it() {
    let root = tempfile::tempdir().expect("tempdir");
    let t = serving(Environment::Dev, &root.path().join("dist")).await;
    let page = t.get("/", None).await;
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .unwrap_or_default()
            .starts_with("text/html")
    );
    assert!(
        page.text.contains(fawkes::web::site::BUILD_COMMAND),
        "{}",
        page.text
    );
    // Only `/` says it; other paths are the API's 404.
    assert_eq!(t.get("/app.js", None).await.status, 404);

    // Built while the server runs: served from the next request on.
    std::fs::create_dir_all(root.path().join("dist")).expect("mkdir");
    std::fs::write(root.path().join("dist/index.html"), "built").expect("write");
    assert_eq!(t.get("/", None).await.text, "built");
}

#[tokio::test]
async fn a_file_over_the_bound_is_refused() {
    let root = tempfile::tempdir().expect("tempdir");
    std::fs::write(root.path().join("index.html"), "built").expect("write");
    let big = vec![b'x'; fawkes::web::site::MAX_FILE_BYTES + 1];
    std::fs::write(root.path().join("big.bin"), &big).expect("write");
    let t = serving(Environment::Dev, root.path()).await;
    let response = t.get("/big.bin", None).await;
    assert_eq!(
        response.status,
        500,
        "{}",
        &response.text[..response.text.len().min(200)]
    );
    assert!(response.body.is_object(), "a JSON error");
    assert_eq!(t.get("/", None).await.text, "built");
}

#[tokio::test]
async fn test_and_prod_never_serve_it() {
    let root = tempfile::tempdir().expect("tempdir");
    std::fs::write(root.path().join("index.html"), "built").expect("write");
    for env in [Environment::Test, Environment::Prod] {
        let t = serving(env, root.path()).await;
        let response = t.get("/", None).await;
        assert!(!response.text.contains("built"), "{env:?}");
        response.assert_json_error(404);
        assert_eq!(
            response.body,
            crate::support::detail("Not Found"),
            "{env:?}"
        );
        t.stop().await;
    }
}
