//! The `fawkes` binary: `serve` (default), `migrate up|down|status`, `gen-secret`.

use std::process::ExitCode;

use clap::Parser;
use fawkes::app::Server;
use fawkes::config::{Cli, Command, Config, MigrateAction, generate_secret_key};
use fawkes::runtime::Health;
use migration::{Migrator, MigratorTrait};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(&cli) {
        Ok(config) => config,
        Err(e) => return fail(&e),
    };
    let command = cli.command.unwrap_or(Command::Serve);
    // Only the server exports traces.
    let serving = matches!(command, Command::Serve);
    let telemetry = match fawkes::telemetry::init(&config, serving) {
        Ok(telemetry) => telemetry,
        Err(e) => return fail(&e),
    };
    let outcome = match command {
        Command::Serve => serve(config).await,
        Command::Migrate { action } => migrate(&config, action).await,
        Command::GenSecret => {
            #[allow(clippy::print_stdout)]
            {
                println!("{}", generate_secret_key());
            }
            Ok(())
        }
        Command::Seed {
            users,
            prefix,
            password,
            tokens_out,
        } => seed(config, users, &prefix, &password, &tokens_out).await,
        Command::Config => {
            let text = serde_json::to_string_pretty(&config.redacted()).unwrap_or_default();
            #[allow(clippy::print_stdout)]
            {
                println!("{text}");
            }
            Ok(())
        }
    };
    // The spans still batched leave before the process does.
    telemetry.shutdown().await;
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e.as_ref()),
    }
}

fn fail(e: &dyn std::error::Error) -> ExitCode {
    #[allow(clippy::print_stderr)]
    {
        eprintln!("fawkes: {e}");
    }
    ExitCode::FAILURE
}

type Outcome = Result<(), Box<dyn std::error::Error>>;

async fn serve(config: Config) -> Outcome {
    raise_open_file_limit();
    let server = Server::start(config).await?;
    // Install the handlers before announcing the URL: a signal that arrives
    // after the "listening" line must always mean a graceful shutdown.
    let signals = Signals::install()?;
    let url = server.url();
    tracing::info!("Fawkes listening on {url} (REST API {url}/api/v1, health {url}/health)");
    let shutdown = server.shutdown_token();
    let draining = server.runtime().clone();
    tokio::spawn(async move {
        signals.recv().await;
        // `/ready` says draining before anything closes.
        draining.start_draining();
        tracing::info!(
            "shutdown signal received: draining (no new connections, /ready 503, in-flight \
             requests finish, sockets close in batches)"
        );
        shutdown.cancel();
    });
    // The runtime's root supervisor giving up stops the process (with a failure status, so
    // whatever supervises it starts a fresh one), as an OTP node stops with its application.
    let runtime = server.runtime().clone();
    let shutdown = server.shutdown_token();
    let went_down = tokio::spawn(async move {
        let health = tokio::select! {
            health = runtime.stopped() => health,
            () = shutdown.cancelled() => return None,
        };
        let Health::Down { reason } = health else {
            return None;
        };
        tracing::error!(%reason, "the realtime runtime is down; shutting the server down");
        shutdown.cancel();
        Some(reason)
    });
    server.wait().await;
    match went_down.await {
        Ok(Some(reason)) => Err(format!("the realtime runtime went down: {reason}").into()),
        _ => Ok(()),
    }
}

/// Raises the open-file soft limit to the hard limit before the server derives its connection
/// cap from it (`http.max_connections = 0`): many systems start services with a soft limit of
/// 1,024 and a hard one far above. Only the binary does this; a program embedding Fawkes keeps
/// its own limits.
fn raise_open_file_limit() {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let limit = getrlimit(Resource::Nofile);
        match (limit.current, limit.maximum) {
            (Some(soft), Some(hard)) if soft < hard => {
                let raised = Rlimit {
                    current: Some(hard),
                    maximum: Some(hard),
                };
                match setrlimit(Resource::Nofile, raised) {
                    Ok(()) => tracing::info!(
                        soft = hard,
                        hard,
                        was = soft,
                        "open-file limit: raised the soft limit to the hard limit"
                    ),
                    Err(e) => tracing::warn!(
                        soft,
                        hard,
                        error = %e,
                        "open-file limit: could not raise the soft limit"
                    ),
                }
            }
            (soft, hard) => tracing::info!(?soft, ?hard, "open-file limit (None: unlimited)"),
        }
    }
}

/// SIGINT and SIGTERM (Ctrl-C elsewhere), registered as soon as this is built.
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {})
        }
    }

    async fn recv(mut self) {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => {}
                _ = self.terminate.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

async fn seed(
    config: Config,
    users: usize,
    prefix: &str,
    password: &str,
    out: &std::path::Path,
) -> Outcome {
    let started = std::time::Instant::now();
    let key = fawkes::config::SecretKey::resolve(&config)?.0;
    fawkes::db::migrate(&config.database_url).await?;
    let db = fawkes::db::connect(&config.database_url, 2).await?;
    let mailer = fawkes::mailer::Mailer::new(&config.mail, db.clone(), key.clone())?;
    let accounts =
        fawkes::accounts::Accounts::new(db.clone(), key, config.token_ttl(), mailer).await?;
    let seeded = accounts.seed_users(prefix, users, password).await?;
    let mut text = String::with_capacity(seeded.len() * 200);
    for (_, token) in &seeded {
        text.push_str(token);
        text.push('\n');
    }
    std::fs::write(out, text)?;
    db.close().await?;
    tracing::info!(
        users = seeded.len(),
        file = %out.display(),
        seconds = started.elapsed().as_secs_f64(),
        "seeded users and wrote their tokens"
    );
    Ok(())
}

async fn migrate(config: &Config, action: MigrateAction) -> Outcome {
    let db = fawkes::db::connect(&config.database_url, 1).await?;
    match action {
        MigrateAction::Up { steps } => Migrator::up(&db, steps).await?,
        MigrateAction::Down { steps } => Migrator::down(&db, Some(steps)).await?,
        MigrateAction::Status => {
            for migration in Migrator::get_migration_with_status(&db).await? {
                #[allow(clippy::print_stdout)]
                {
                    println!("{:?}\t{}", migration.status(), migration.name());
                }
            }
        }
    }
    db.close().await?;
    Ok(())
}
