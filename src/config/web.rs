//! The `[web]` section: the browser client that `dev` serves at `/`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where the built browser client is (`web/`, built with `npm --prefix web ci && npm --prefix
/// web run build`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WebConfig {
    /// The directory served at `/` in `dev` (relative to the working directory): its
    /// `index.html` at `/` and its files beneath. While it holds no `index.html`, `/` answers
    /// a page saying how to build it. `test` and `prod` never serve it (put the built files
    /// behind your own web server or CDN).
    pub static_dir: PathBuf,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            static_dir: PathBuf::from("web/dist"),
        }
    }
}
