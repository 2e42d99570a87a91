//! `GET /dev/mailbox`: the mail the server sent, newest first (dev environment only).

use http::StatusCode;
use serde_json::json;

use crate::app::App;
use crate::web::error::ApiError;
use crate::web::response::{self, Response};

/// How many mails the mailbox shows.
const MAILBOX_SIZE: u64 = 50;

pub(crate) async fn mailbox(app: &App) -> Result<Response, ApiError> {
    let mails = app.mailer.recent(MAILBOX_SIZE).await?;
    Ok(response::json(StatusCode::OK, &json!({ "data": mails })))
}
