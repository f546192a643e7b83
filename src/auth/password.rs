//! Passwords: argon2id with the crate's defaults, which are OWASP's minimum (19 MiB, 2 passes,
//! 1 lane). A hash or a verification costs tens of milliseconds of CPU by design, so handlers run
//! it through [`Hasher`]: off the async workers, never on the check's path, never while holding a
//! database connection (read the row, give the connection back, verify, then write in a new short
//! transaction if need be), and at most half the CPU cores at a time. A burst of logins then queues
//! for those threads alone instead of starving the pool's connections or every core, which kept
//! the API and the check waiting.

use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use rand::Rng;
use rand::distr::Alphanumeric;
use tokio::sync::Semaphore;

use crate::error::ApiError;

/// Runs argon2 on the blocking thread pool, at most `limit` at a time; further work waits its
/// turn holding nothing.
#[derive(Debug, Clone)]
pub(crate) struct Hasher {
    permits: Arc<Semaphore>,
}

impl Default for Hasher {
    /// Half the machine's cores, at least one: the other half stays with the API and the check.
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::new((cores / 2).max(1))
    }
}

impl Hasher {
    pub fn new(limit: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(limit.max(1))),
        }
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(ApiError::internal)?;
        // The permit goes with the work, so that it bounds the threads even when the request
        // that started it is gone.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        .map_err(ApiError::internal)
    }

    /// Whether `password` matches `phc`; for no hash (no such account), the same work is spent
    /// on a dummy one and the answer is no.
    pub async fn verify(&self, password: String, phc: Option<String>) -> Result<bool, ApiError> {
        self.run(move || match phc {
            Some(phc) => verify(&password, &phc),
            None => {
                verify_nobody(&password);
                false
            }
        })
        .await
    }

    /// The PHC string of `password`, with a fresh salt.
    pub async fn hash(&self, password: String) -> Result<String, ApiError> {
        self.run(move || hash(&password))
            .await?
            .map_err(|e| ApiError::internal(std::io::Error::other(e.to_string())))
    }
}

pub(crate) const MIN_LENGTH: usize = 12;
pub(crate) const MAX_LENGTH: usize = 1024;

/// Refuses a password that is too short or absurdly long (argon2 would hash a megabyte happily).
pub(crate) fn check_strength(password: &str) -> Result<(), String> {
    let chars = password.chars().count();
    if chars < MIN_LENGTH {
        return Err(format!("must be at least {MIN_LENGTH} characters"));
    }
    if password.len() > MAX_LENGTH {
        return Err(format!("must be at most {MAX_LENGTH} bytes"));
    }
    Ok(())
}

/// The PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`), with a fresh random salt.
pub(crate) fn hash(password: &str) -> Result<String, argon2::password_hash::Error> {
    Ok(Argon2::default()
        .hash_password(password.as_bytes())?
        .to_string())
}

/// Whether `password` matches `phc`. A malformed stored hash never matches.
pub(crate) fn verify(password: &str, phc: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), phc)
        .is_ok()
}

/// Spends the same work as a real verification, for a username that does not exist, so that the
/// answer's timing does not tell whether it does.
pub(crate) fn verify_nobody(password: &str) {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let phc = DUMMY.get_or_init(|| hash("not the password of anyone").unwrap_or_default());
    let _ = verify(password, phc);
}

/// A random password for a new account: 24 alphanumeric characters (about 143 bits).
pub(crate) fn generate() -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(24)
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_and_no_other() {
        let phc = hash("correct horse battery").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify("correct horse battery", &phc));
        assert!(!verify("correct horse battery!", &phc));
        assert!(!verify("correct horse battery", "not a phc string"));
    }

    #[test]
    fn short_passwords_are_refused() {
        assert!(check_strength("elevenchars").is_err());
        assert!(check_strength("twelve chars").is_ok());
        assert_eq!(generate().len(), 24);
    }
}
