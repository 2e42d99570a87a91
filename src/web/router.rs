//! Routes: path patterns (matchit) to a [`Route`], then (route, method) to a controller.

use bytes::Bytes;
use http::Method;

use super::controllers::{conversations, dev, health, rooms, sessions, users};
use super::error::ApiError;
use super::response::Response;
use crate::app::App;

/// Every routed path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Health,
    Ready,
    Users,
    User,
    Sessions,
    Me,
    RoomMessages,
    Conversations,
    Conversation,
    ConversationMessages,
    DevMailbox,
}

impl Route {
    /// The `Allow` header for a 405 on this route.
    fn allow(self) -> &'static str {
        match self {
            Route::Health | Route::Ready | Route::Me | Route::DevMailbox => "GET",
            Route::Users => "GET, POST",
            Route::User => "GET, PATCH, DELETE",
            Route::Sessions => "POST, DELETE",
            Route::RoomMessages => "POST",
            Route::Conversations | Route::ConversationMessages => "GET, POST",
            Route::Conversation => "GET",
        }
    }
}

/// The path table.
pub struct Router {
    routes: matchit::Router<Route>,
}

impl Router {
    /// The API's routes; `/dev/*` only when `dev_routes`.
    pub fn new(dev_routes: bool) -> Self {
        let mut table = vec![
            ("/health", Route::Health),
            ("/ready", Route::Ready),
            ("/api/v1/users", Route::Users),
            ("/api/v1/users/{id}", Route::User),
            ("/api/v1/sessions", Route::Sessions),
            ("/api/v1/me", Route::Me),
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
        for (path, route) in table {
            // The table is static and conflict-free; a conflict is a programming error.
            #[allow(clippy::expect_used)]
            routes
                .insert(path, route)
                .expect("route table has no conflicts");
        }
        Self { routes }
    }

    /// Runs the controller for `request`, mapping any failure to its error response.
    pub async fn dispatch<B>(&self, app: &App, request: http::Request<B>) -> Response
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let Ok(matched) = self.routes.at(request.uri().path()) else {
            return ApiError::NotFound.into_response();
        };
        let route = *matched.value;
        let id = matched
            .params
            .get("id")
            .or(matched.params.get("name"))
            .map(str::to_owned);
        let id = id.as_deref().unwrap_or_default();
        let method = request.method().clone();
        let result = match (route, method) {
            (Route::Health, Method::GET) => Ok(health::live()),
            (Route::Ready, Method::GET) => health::ready(app).await,
            (Route::Users, Method::GET) => users::index(app, request).await,
            (Route::Users, Method::POST) => users::create(app, request).await,
            (Route::User, Method::GET) => users::show(app, request, id).await,
            (Route::User, Method::PATCH) => users::update(app, request, id).await,
            (Route::User, Method::DELETE) => users::delete(app, request, id).await,
            (Route::Me, Method::GET) => users::me(app, request).await,
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
}
