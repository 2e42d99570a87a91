//! The browser client (`web/`), served at `/` in `dev` from `web.static_dir`.
//!
//! Only `GET` and `HEAD` of paths no API route matches reach it, so it never shadows the API.
//! Files are served as they are on disk (built with `npm --prefix web run build`, rebuilt
//! while the server runs); request paths are resolved inside the directory only (`..` never
//! leaves it), though symbolic links placed in it are followed, as by any static file server.
//! A file is read whole before it is answered, so files over [`MAX_FILE_BYTES`] are refused
//! (500): the directory is for the client's bundle, not for large downloads. Until the
//! directory holds an `index.html`, `/` answers a page giving the build command and every
//! other path is the API's 404.

use std::path::PathBuf;

use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use tower::ServiceExt as _;
use tower_http::services::ServeDir;

use super::error::ApiError;
use super::response::Response;

/// The one command that builds the client, from the repository's root.
pub const BUILD_COMMAND: &str = "npm --prefix web ci && npm --prefix web run build";

/// The largest file served (16 MiB; the client's bundle is a few hundred KiB).
pub const MAX_FILE_BYTES: usize = 16 * 1024 * 1024;

/// The static directory of the browser client.
#[derive(Debug, Clone)]
pub struct Site {
    dir: PathBuf,
    files: ServeDir,
}

impl Site {
    /// Serves `dir`.
    pub fn new(dir: PathBuf) -> Self {
        let files = ServeDir::new(&dir).append_index_html_on_directories(true);
        Self { dir, files }
    }

    /// Whether this request is for the site: `GET` or `HEAD`, and no API route (`routed`) and
    /// not a path the site cannot answer while it is not built.
    pub fn wants<B>(&self, request: &http::Request<B>, routed: bool) -> bool {
        if routed || !matches!(*request.method(), Method::GET | Method::HEAD) {
            return false;
        }
        self.built() || request.uri().path() == "/"
    }

    fn built(&self) -> bool {
        self.dir.join("index.html").is_file()
    }

    /// The file the request names, or the page saying how to build the client.
    pub async fn serve<B>(&self, request: http::Request<B>) -> Response
    where
        B: Send + 'static,
    {
        if !self.built() {
            return not_built(&self.dir);
        }
        // Only the method, URI and headers matter to the file service.
        let (parts, _) = request.into_parts();
        let request =
            http::Request::from_parts(parts, http_body_util::Empty::<bytes::Bytes>::new());
        let response = match self.files.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        // The client's files are small: read whole (bounded), so the response is a handler's
        // like any.
        let (parts, body) = response.into_parts();
        let body = match Limited::new(body, MAX_FILE_BYTES).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                return ApiError::Internal(format!(
                    "serving {} from web.static_dir (at most {MAX_FILE_BYTES} bytes): {e}",
                    parts_path(&parts)
                ))
                .into_response();
            }
        };
        let mut response = http::Response::from_parts(parts, Full::new(body));
        let headers = response.headers_mut();
        // Development: a rebuilt client shows on the next reload.
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert(
            http::header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        response
    }
}

/// What a file response was (for the error log): its length when known.
fn parts_path(parts: &http::response::Parts) -> String {
    parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .map_or_else(
            || "a file".to_owned(),
            |len| format!("a file of {len} bytes"),
        )
}

/// `/` while the client is not built: what to run.
fn not_built(dir: &std::path::Path) -> Response {
    let dir = html_escape(&dir.display().to_string());
    let page = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Fawkes</title></head><body>\n\
         <h1>Fawkes is running</h1>\n\
         <p>The browser client is not built yet (nothing in <code>{dir}</code>). \
         From the repository's root, build it with:</p>\n\
         <pre><code>{BUILD_COMMAND}</code></pre>\n\
         <p>then reload this page. The API is at <code>/api/v1</code>, its description at \
         <a href=\"/api/openapi.json\">/api/openapi.json</a>.</p>\n\
         </body></html>\n"
    );
    let mut response = http::Response::new(Full::new(bytes::Bytes::from(page)));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
