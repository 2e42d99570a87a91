//! Routes: path patterns (matchit) to a `Route`, then (route, method) to a controller.
//!
//! Development routes (`/dev/*`) exist only when the router is built with them (the `dev`
//! environment), and even then answer only loopback clients that did not come through a
//! proxy: anyone else gets 404, as if they did not exist. Behind a reverse proxy on the same
//! host every client's connection comes from loopback, so a request carrying `Forwarded`,
//! `X-Forwarded-For` or `X-Real-IP` (which a proxy adds, and a local developer does not) is
//! refused too.

use bytes::Bytes;
use http::Method;

use super::controllers::{conversations, dev, health, rooms, sessions, socket_tokens, users};
use super::error::ApiError;
use super::openapi;
use super::request::PeerAddr;
use super::response::Response;
use crate::app::App;

/// Every routed path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Health,
    Ready,
    OpenApi,
    Users,
    User,
    Sessions,
    Me,
    SocketTokens,
    RoomMessages,
    Conversations,
    Conversation,
    ConversationMessages,
    DevMailbox,
}

impl Route {
    /// The methods this route answers ([`Router::dispatch`] has an arm for each).
    fn methods(self) -> &'static [Method] {
        match self {
            Route::Health | Route::Ready | Route::OpenApi | Route::Me | Route::DevMailbox => {
                &[Method::GET]
            }
            Route::Users => &[Method::GET, Method::POST],
            Route::User => &[Method::GET, Method::PATCH, Method::DELETE],
            Route::Sessions => &[Method::POST, Method::DELETE],
            Route::RoomMessages | Route::SocketTokens => &[Method::POST],
            Route::Conversations | Route::ConversationMessages => &[Method::GET, Method::POST],
            Route::Conversation => &[Method::GET],
        }
    }

    /// The `Allow` header for a 405 on this route: [`Route::methods`], joined.
    fn allow(self) -> &'static str {
        match self {
            Route::Health | Route::Ready | Route::OpenApi | Route::Me | Route::DevMailbox => "GET",
            Route::Users => "GET, POST",
            Route::User => "GET, PATCH, DELETE",
            Route::Sessions => "POST, DELETE",
            Route::RoomMessages | Route::SocketTokens => "POST",
            Route::Conversations | Route::ConversationMessages => "GET, POST",
            Route::Conversation => "GET",
        }
    }
}

/// The path table.
pub struct Router {
    routes: matchit::Router<(Route, &'static str)>,
    table: Vec<(&'static str, Route)>,
}

impl Router {
    /// The API's routes; `/dev/*` only when `dev_routes`.
    pub fn new(dev_routes: bool) -> Self {
        let mut table = vec![
            ("/health", Route::Health),
            ("/ready", Route::Ready),
            ("/api/openapi.json", Route::OpenApi),
            ("/api/v1/users", Route::Users),
            ("/api/v1/users/{id}", Route::User),
            ("/api/v1/sessions", Route::Sessions),
            ("/api/v1/me", Route::Me),
            ("/api/v1/socket_tokens", Route::SocketTokens),
            ("/api/v1/rooms/{name}/messages", Route::RoomMessages),
            ("/api/v1/conversations", Route::Conversations),
            ("/api/v1/conversations/{id}", Route::Conversation),
            (
                "/api/v1/conversations/{id}/messages",
                Route::ConversationMessages,
            ),
        ];
        if dev_routes {
            table.push(("/dev/mailbox", Route::DevMailbox));
        }
        let mut routes = matchit::Router::new();
        for &(path, route) in &table {
            // The table is static and conflict-free; a conflict is a programming error.
            #[allow(clippy::expect_used)]
            routes
                .insert(path, (route, path))
                .expect("route table has no conflicts");
        }
        Self { routes, table }
    }

    /// Every (route template, method) this router answers, in table order: what the OpenAPI
    /// document must describe (development routes aside), and what the API tests compare it
    /// with.
    pub fn routes(&self) -> impl Iterator<Item = (&'static str, Method)> + '_ {
        self.table.iter().flat_map(|&(path, route)| {
            route
                .methods()
                .iter()
                .map(move |method| (path, method.clone()))
        })
    }

    /// The route template `path` matches (`/api/v1/users/{id}`), if any: a label of low
    /// cardinality for spans and metrics, never the path itself. Development routes match
    /// here whoever asks; [`Router::dispatch`] still answers them only to loopback peers.
    pub fn template(&self, path: &str) -> Option<&'static str> {
        self.routes.at(path).ok().map(|matched| matched.value.1)
    }

    /// Runs the controller for `request`, mapping any failure to its error response.
    pub async fn dispatch<B>(&self, app: &App, request: http::Request<B>) -> Response
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let Some((route, id)) = self.route(&request) else {
            return ApiError::NotFound.into_response();
        };
        // Probes are cheap and must answer whatever a client does.
        if !matches!(route, Route::Health | Route::Ready)
            && let Some(peer) = request.extensions().get::<PeerAddr>()
            && let Err(wait) = app.request_limiter.check(peer.client())
        {
            return ApiError::TooManyRequests(wait).into_response();
        }
        let id = id.as_str();
        let method = request.method().clone();
        let result = match (route, method) {
            (Route::Health, Method::GET) => health::live(app),
            (Route::Ready, Method::GET) => health::ready(app).await,
            (Route::OpenApi, Method::GET) => openapi::serve(),
            (Route::Users, Method::GET) => users::index(app, request).await,
            (Route::Users, Method::POST) => users::create(app, request).await,
            (Route::User, Method::GET) => users::show(app, request, id).await,
            (Route::User, Method::PATCH) => users::update(app, request, id).await,
            (Route::User, Method::DELETE) => users::delete(app, request, id).await,
            (Route::Me, Method::GET) => users::me(app, request).await,
            (Route::SocketTokens, Method::POST) => socket_tokens::create(app, request).await,
            (Route::Sessions, Method::POST) => sessions::create(app, request).await,
            (Route::Sessions, Method::DELETE) => sessions::delete(app, request).await,
            (Route::RoomMessages, Method::POST) => rooms::post_message(app, request, id).await,
            (Route::Conversations, Method::GET) => conversations::index(app, request).await,
            (Route::Conversations, Method::POST) => conversations::open(app, request).await,
            (Route::Conversation, Method::GET) => conversations::show(app, request, id).await,
            (Route::ConversationMessages, Method::GET) => {
                conversations::messages(app, request, id).await
            }
            (Route::ConversationMessages, Method::POST) => {
                conversations::post(app, request, id).await
            }
            (Route::DevMailbox, Method::GET) => dev::mailbox(app).await,
            (route, _) => Err(ApiError::MethodNotAllowed(route.allow())),
        };
        result.unwrap_or_else(ApiError::into_response)
    }

    /// The route of `request` and its path parameter (`id` or `name`, raw), if it has one the
    /// client may reach: development routes only from a loopback peer, not through a proxy.
    fn route<B>(&self, request: &http::Request<B>) -> Option<(Route, String)> {
        let matched = self.routes.at(request.uri().path()).ok()?;
        let (route, _) = *matched.value;
        if route == Route::DevMailbox
            && (!is_loopback(request.extensions().get::<PeerAddr>()) || is_proxied(request))
        {
            return None;
        }
        let param = matched
            .params
            .get("id")
            .or(matched.params.get("name"))
            .unwrap_or_default()
            .to_owned();
        Some((route, param))
    }
}

/// Whether the peer is on this machine (IPv4 or IPv6 loopback, also IPv4-mapped). An unknown
/// peer is not.
fn is_loopback(peer: Option<&PeerAddr>) -> bool {
    peer.is_some_and(|PeerAddr(addr)| addr.ip().to_canonical().is_loopback())
}

/// Headers a reverse proxy adds to say whom it forwards for.
const PROXY_HEADERS: [&str; 3] = ["forwarded", "x-forwarded-for", "x-real-ip"];

/// Whether `request` says it was forwarded by a proxy (any of [`PROXY_HEADERS`], whatever its
/// value).
fn is_proxied<B>(request: &http::Request<B>) -> bool {
    PROXY_HEADERS
        .iter()
        .any(|name| request.headers().contains_key(*name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(path: &str, peer: Option<&str>) -> http::Request<()> {
        let mut request = http::Request::get(path).body(()).expect("request");
        if let Some(peer) = peer {
            request
                .extensions_mut()
                .insert(PeerAddr(peer.parse().expect("socket address")));
        }
        request
    }

    #[test]
    fn dev_routes_answer_loopback_peers_only() {
        let router = Router::new(true);
        for peer in [
            "127.0.0.1:5000",
            "127.9.9.9:5000",
            "[::1]:5000",
            "[::ffff:127.0.0.1]:5000",
        ] {
            assert_eq!(
                router.route(&request("/dev/mailbox", Some(peer))),
                Some((Route::DevMailbox, String::new())),
                "{peer}"
            );
        }
        for peer in [
            Some("10.0.0.1:5000"),
            Some("192.168.1.20:5000"),
            Some("203.0.113.7:5000"),
            Some("[2001:db8::1]:5000"),
            Some("[::ffff:10.0.0.1]:5000"),
            Some("0.0.0.0:5000"),
            None,
        ] {
            assert_eq!(
                router.route(&request("/dev/mailbox", peer)),
                None,
                "{peer:?}"
            );
        }
        // Other routes do not care where the client is.
        assert_eq!(
            router.route(&request("/api/v1/users/7", Some("203.0.113.7:5000"))),
            Some((Route::User, "7".to_owned()))
        );
    }

    #[test]
    fn dev_routes_refuse_requests_a_proxy_forwarded() {
        let router = Router::new(true);
        for header in PROXY_HEADERS {
            let mut proxied = request("/dev/mailbox", Some("127.0.0.1:5000"));
            proxied
                .headers_mut()
                .insert(header, http::HeaderValue::from_static("127.0.0.1"));
            assert_eq!(router.route(&proxied), None, "{header}");
        }
        // Other routes do not care.
        let mut proxied = request("/api/v1/users/7", Some("127.0.0.1:5000"));
        proxied.headers_mut().insert(
            "x-forwarded-for",
            http::HeaderValue::from_static("203.0.113.7"),
        );
        assert!(router.route(&proxied).is_some());
    }

    #[test]
    fn templates_name_the_pattern_not_the_path() {
        let router = Router::new(false);
        assert_eq!(
            router.template("/api/v1/users/7"),
            Some("/api/v1/users/{id}")
        );
        assert_eq!(
            router.template("/api/v1/rooms/l%20obby/messages"),
            Some("/api/v1/rooms/{name}/messages")
        );
        assert_eq!(router.template("/health"), Some("/health"));
        assert_eq!(router.template("/nope"), None);
        assert_eq!(router.template("/dev/mailbox"), None);
    }

    #[test]
    fn allow_headers_list_the_routes_methods() {
        let router = Router::new(true);
        for &(path, route) in &router.table {
            let methods: Vec<&str> = route.methods().iter().map(Method::as_str).collect();
            assert_eq!(route.allow(), methods.join(", "), "{path}");
        }
        let routes: Vec<_> = router.routes().collect();
        assert!(routes.contains(&("/api/v1/users/{id}", Method::PATCH)));
        assert!(routes.contains(&("/dev/mailbox", Method::GET)));
        assert!(
            !Router::new(false)
                .routes()
                .any(|(path, _)| path == "/dev/mailbox")
        );
    }

    #[test]
    fn without_dev_routes_nobody_reaches_them() {
        let router = Router::new(false);
        assert_eq!(
            router.route(&request("/dev/mailbox", Some("127.0.0.1:1"))),
            None
        );
    }
}
