//! Command-line interface: subcommands and the flags that override configuration.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde_json::{Map, Value, json};

use super::{Environment, LogFormat, MailTransportKind};

/// Fawkes: a Phoenix-Channels-compatible realtime server.
///
/// With no subcommand, `fawkes` runs `fawkes serve`.
#[derive(Debug, Parser)]
#[command(name = "fawkes", version, about, long_about = None)]
pub struct Cli {
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Configuration file (default: ./fawkes.toml when present).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Flags that override every other configuration source.
    #[command(flatten)]
    pub flags: Flags,
}

/// Configuration overrides given on the command line.
#[derive(Debug, Args, Default)]
pub struct Flags {
    /// Deployment environment.
    #[arg(long, global = true, value_enum)]
    pub env: Option<Environment>,
    /// Listen address, e.g. 127.0.0.1:4000.
    #[arg(long, global = true, value_name = "ADDR")]
    pub bind: Option<SocketAddr>,
    /// Database URL: sqlite://PATH or postgres://USER@HOST/DB.
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// Log filter, e.g. "info" or "fawkes=debug,info".
    #[arg(long, global = true, value_name = "FILTER")]
    pub log: Option<String>,
    /// Log line format.
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    /// File holding the development token key.
    #[arg(long, global = true, value_name = "FILE")]
    pub secret_key_file: Option<PathBuf>,
    /// Mail transport.
    #[arg(long, global = true, value_enum)]
    pub mail_transport: Option<MailTransportKind>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve,
    /// Inspect or apply database migrations.
    Migrate {
        /// What to do with the migrations.
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Print a new random token key (PASERK k4.local) for `secret_key`.
    GenSecret,
    /// Print the effective configuration as JSON, secrets redacted.
    Config,
    /// Create many users and write one access token per line to a file (a load-test aid: all
    /// share one password hash, so 20,000 users take seconds).
    Seed {
        /// How many users (`{prefix}-0@bench.invalid` …); existing ones are reused.
        #[arg(long, default_value_t = 1000)]
        users: usize,
        /// E-mail prefix of the seeded users.
        #[arg(long, default_value = "bench")]
        prefix: String,
        /// Their password.
        #[arg(long, default_value = "bench password 1234")]
        password: String,
        /// Where to write the tokens, one per line, in user order.
        #[arg(long, value_name = "FILE")]
        tokens_out: std::path::PathBuf,
    },
}

/// `fawkes migrate` actions.
#[derive(Debug, Clone, Copy, Subcommand)]
pub enum MigrateAction {
    /// Apply pending migrations (all, or the next N).
    Up {
        /// How many to apply.
        #[arg(short = 'n', long)]
        steps: Option<u32>,
    },
    /// Roll back applied migrations (the last one, or the last N).
    Down {
        /// How many to roll back.
        #[arg(short = 'n', long, default_value_t = 1)]
        steps: u32,
    },
    /// List every migration and whether it is applied.
    Status,
}

impl Cli {
    /// The flags that were given, as a configuration layer.
    pub(crate) fn overrides(&self) -> Value {
        let f = &self.flags;
        let mut top = Map::new();
        let mut put = |key: &str, value: Option<Value>| {
            if let Some(value) = value {
                top.insert(key.to_owned(), value);
            }
        };
        put("env", f.env.map(|v| json!(v)));
        put("bind", f.bind.map(|v| json!(v)));
        put("database_url", f.database_url.as_ref().map(|v| json!(v)));
        put("log", f.log.as_ref().map(|v| json!(v)));
        put("log_format", f.log_format.map(|v| json!(v)));
        put(
            "secret_key_file",
            f.secret_key_file.as_ref().map(|v| json!(v)),
        );
        if let Some(transport) = f.mail_transport {
            top.insert("mail".to_owned(), json!({ "transport": transport }));
        }
        Value::Object(top)
    }
}
