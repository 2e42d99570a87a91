//! The browser client (`web/`), served at `/` in `dev` from `web.static_dir`.
//!
//! Only `GET` and `HEAD` of paths no API route matches reach it, so it never shadows the API.
//! Files are served as they are on disk (built with `npm --prefix web run build`, rebuilt
//! while the server runs); paths are resolved inside the directory only (`..` never leaves
//! it). Until the directory holds an `index.html`, `/` answers a page giving the build
//! command and every other path is the API's 404.

use std::path::PathBuf;

use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt as _, Full};
use tower::ServiceExt as _;
use tower_http::services::ServeDir;

use super::error::ApiError;
use super::response::Response;

/// The one command that builds the client, from the repository's root.
pub const BUILD_COMMAND: &str = "npm --prefix web ci && npm --prefix web run build";

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
        let request = http::Request::from_parts(parts, http_body_util::Empty::<bytes::Bytes>::new());
        let response = match self.files.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        // Development files are small: read whole, so the response is a handler's like any.
        let (parts, body) = response.into_parts();
        let Ok(body) = body.collect().await.map(|collected| collected.to_bytes()) else {
            return ApiError::Internal("reading a file of the browser client".into()).into_response();
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
