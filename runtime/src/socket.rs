//! The [`Socket`] trait: who may connect, and what a connection knows about its user.
//!
//! A socket is mounted at a path (e.g. `/socket`, served at `/socket/websocket`). For every
//! WebSocket upgrade request, [`Socket::connect`] runs *before* the upgrade: it sees the query
//! parameters and selected connection details and either returns the connection's assigns
//! (typically the authenticated user) or refuses with an HTTP status (403 by default).
//!
//! **Security:** parameters and the auth token are untrusted client input; verify them.

use std::collections::HashMap;
use std::net::SocketAddr;

/// Query-string parameters of the upgrade request (`vsn` included), decoded. Nested keys such
/// as `a[b]` are kept literally. A repeated key keeps its last value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(HashMap<String, String>);

impl Params {
    /// Parses a query string.
    pub fn from_query(query: &str) -> Self {
        Self(
            form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect(),
        )
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Every parameter.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// What the server knows about the connection besides its parameters. Cookies and other
/// headers are deliberately absent (cross-site WebSocket hijacking).
#[derive(Debug, Clone)]
pub struct ConnectInfo {
    /// The client's address.
    pub peer: SocketAddr,
    /// The token from the `base64url.bearer.phx.<token>` subprotocol (phoenix.js `authToken`).
    pub auth_token: Option<String>,
    /// The request path and query.
    pub uri: http::Uri,
    /// The `Origin` header, if any (already checked against `check_origin`).
    pub origin: Option<String>,
    /// The `User-Agent` header.
    pub user_agent: Option<String>,
}

/// A refused connection: the HTTP status the upgrade request gets (the browser only sees a
/// failed connection; phoenix.js retries with backoff).
///
/// ```
/// use fawkes_runtime::ConnectError;
///
/// let refused = ConnectError::with_status(http::StatusCode::UNAUTHORIZED);
/// assert_eq!(refused.to_string(), "connection refused: 401 Unauthorized");
/// let error: Box<dyn std::error::Error> = Box::new(ConnectError::forbidden());
/// assert_eq!(error.to_string(), "connection refused: 403 Forbidden");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("connection refused: {status}")]
pub struct ConnectError {
    /// The status, 403 unless chosen otherwise.
    pub status: http::StatusCode,
}

impl ConnectError {
    /// Refuse with 403 Forbidden.
    pub fn forbidden() -> Self {
        Self {
            status: http::StatusCode::FORBIDDEN,
        }
    }

    /// Refuse with another status (e.g. 401, 429).
    pub fn with_status(status: http::StatusCode) -> Self {
        Self { status }
    }
}

/// A socket handler: authenticates connections and names them.
///
/// ```
/// use fawkes_runtime::{ConnectError, ConnectInfo, Params, Socket};
///
/// struct UserSocket;
///
/// impl Socket for UserSocket {
///     type Assigns = String; // the user name
///
///     async fn connect(&self, params: &Params, _info: &ConnectInfo) -> Result<String, ConnectError> {
///         params.get("user").map(str::to_owned).ok_or_else(ConnectError::forbidden)
///     }
///
///     fn id(&self, user: &String) -> Option<String> {
///         Some(format!("user_socket:{user}"))
///     }
/// }
/// ```
pub trait Socket: Send + Sync + 'static {
    /// What a connection carries for its whole life (e.g. the user), shared by its channels.
    type Assigns: Send + Sync + 'static;

    /// Accepts or refuses a connection. Runs before the WebSocket upgrade.
    fn connect(
        &self,
        params: &Params,
        info: &ConnectInfo,
    ) -> impl Future<Output = Result<Self::Assigns, ConnectError>> + Send;

    /// The socket id, e.g. `user_socket:42`. Broadcasting `disconnect` to it (see
    /// `PubSub::disconnect`) closes every socket with that id with close code 1001.
    fn id(&self, assigns: &Self::Assigns) -> Option<String> {
        let _ = assigns;
        None
    }

    /// More topics on which a `disconnect` broadcast closes this socket (e.g. one per access
    /// token, so that revoking a token closes exactly the sockets it opened).
    fn disconnect_topics(&self, assigns: &Self::Assigns) -> Vec<String> {
        let _ = assigns;
        Vec::new()
    }
}
