//! Password hashing with argon2id (OWASP parameters: 19 MiB, 2 passes, 1 lane).
//!
//! Hashing is CPU- and memory-heavy (about 25 ms of CPU each), so it runs off the async runtime
//! on a small pool of its own whose threads run at the lowest scheduling priority: under load
//! the async workers (WebSocket traffic, other requests) preempt them, and logins wait instead
//! of everything else. At most one hash per core runs at once, so a burst of logins queues
//! instead of allocating 19 MiB per request without bound.

use std::sync::Arc;

use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier as _, Version};
use rand::RngExt as _;
use rand::distr::Alphanumeric;
use tokio::sync::Semaphore;

/// Length of generated passwords: 20 alphanumerics, about 119 bits of entropy.
const GENERATED_LEN: usize = 20;

/// Hashes and verifies passwords off the async runtime.
#[derive(Clone)]
pub(crate) struct Passwords {
    permits: Arc<Semaphore>,
    /// A hash of a random password, verified against when no user matches, so an unknown
    /// e-mail costs the same time as a wrong password.
    dummy_hash: Arc<str>,
}

/// Hashing failed (only on an internal error: bad parameters or the pool shutting down).
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub(crate) struct HashError(String);

fn hasher() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::default())
}

impl Passwords {
    /// Creates the hasher; computes the dummy hash once.
    pub(crate) async fn new() -> Result<Self, HashError> {
        let parallelism = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut this = Self {
            permits: Arc::new(Semaphore::new(parallelism)),
            dummy_hash: Arc::from(""),
        };
        this.dummy_hash = Arc::from(this.hash(generate()).await?);
        Ok(this)
    }

    /// Hashes `password` into a PHC string.
    pub(crate) async fn hash(&self, password: String) -> Result<String, HashError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| HashError(e.to_string()))?;
        // The permit lives as long as the job, not the request: a request that gives up (a
        // timeout) does not let another hash start while its own still runs.
        on_hash_pool(move || {
            let _permit = permit;
            hasher()
                .hash_password(password.as_bytes())
                .map(|hash| hash.to_string())
                .map_err(|e| HashError(e.to_string()))
        })
        .await
        .map_err(HashError)?
    }

    /// Whether `password` matches `hash`. With `None` (no such user) the dummy hash is
    /// checked instead and the answer is always `false`, in the same time.
    pub(crate) async fn verify(&self, password: String, hash: Option<String>) -> bool {
        let Ok(permit) = self.permits.clone().acquire_owned().await else {
            return false;
        };
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy_hash.to_string());
        let matched = on_hash_pool(move || {
            let _permit = permit;
            hasher()
                .verify_password(password.as_bytes(), hash.as_str())
                .is_ok()
        })
        .await
        .unwrap_or(false);
        known && matched
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// Puts the calling thread below every other: on Linux `SCHED_IDLE` (it gets a core mostly when
/// nothing else wants one, and a waking runtime thread preempts it at once), elsewhere the
/// lowest priority of the normal policy.
fn lower_priority() -> Result<(), thread_priority::Error> {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::{NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy};
        thread_priority::set_thread_priority_and_policy(
            thread_priority::thread_native_id(),
            ThreadPriority::Min,
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
        )
    }
    #[cfg(not(target_os = "linux"))]
    {
        thread_priority::set_current_thread_priority(thread_priority::ThreadPriority::Min)
    }
}

/// The hashing threads' queue (started on first use, one thread per core).
fn hash_pool() -> &'static std::sync::mpsc::Sender<Job> {
    static POOL: std::sync::OnceLock<std::sync::mpsc::Sender<Job>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        for i in 0..threads {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("fawkes-hash-{i}"))
                .spawn(move || {
                    if let Err(e) = lower_priority() {
                        tracing::debug!(error = ?e, "could not lower the hashing thread's priority");
                    }
                    loop {
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(e) => e.into_inner().recv(),
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a hashing thread");
            }
        }
        tx
    })
}

/// Runs `work` on a hashing thread and waits for it without blocking the runtime.
async fn on_hash_pool<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    hash_pool()
        .send(Box::new(move || {
            let _ = tx.send(work());
        }))
        .map_err(|_| "the hashing pool is gone".to_owned())?;
    rx.await.map_err(|_| "a hashing thread failed".to_owned())
}

/// A strong random password for users who registered without one.
pub(crate) fn generate() -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(GENERATED_LEN)
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_then_verify() {
        let passwords = Passwords::new().await.expect("hasher");
        let hash = passwords
            .hash("correct horse battery".into())
            .await
            .expect("hash");
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(!hash.contains("correct horse"));
        assert!(
            passwords
                .verify("correct horse battery".into(), Some(hash.clone()))
                .await
        );
        assert!(
            !passwords
                .verify("wrong horse battery".into(), Some(hash))
                .await
        );
        assert!(!passwords.verify("anything".into(), None).await);
    }

    #[test]
    fn generated_passwords_are_long_and_distinct() {
        let (a, b) = (generate(), generate());
        assert_eq!(a.len(), GENERATED_LEN);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }
}
