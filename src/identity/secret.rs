use rand::RngCore;
use std::fmt;

/// Shortest `VISITOR_SECRET` we accept; shorter keys would weaken the visitor hashes.
pub const MIN_SECRET_BYTES: usize = 32;

/// The server-side key for visitor hashes (and, later, cookie signatures).
///
/// Comes from `VISITOR_SECRET`, or is generated once and kept in the database so that restarts and
/// other instances agree. Never printed.
#[derive(Clone)]
pub struct VisitorSecret(Vec<u8>);

/// A configured secret that is too weak to use.
#[derive(Debug, thiserror::Error)]
#[error(
    "VISITOR_SECRET must be at least {MIN_SECRET_BYTES} bytes long (got {0}); generate one with `openssl rand -base64 48`"
)]
pub struct SecretError(usize);

impl VisitorSecret {
    /// Parses the configured secret (`VISITOR_SECRET` / `--visitor-secret`).
    pub fn parse(configured: &str) -> Result<Self, SecretError> {
        if configured.len() < MIN_SECRET_BYTES {
            return Err(SecretError(configured.len()));
        }
        Ok(Self(configured.as_bytes().to_vec()))
    }

    /// A fresh random 256-bit secret.
    pub fn generate() -> Self {
        let mut bytes = vec![0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Self(bytes)
    }

    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for VisitorSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VisitorSecret(<redacted>)")
    }
}

impl std::str::FromStr for VisitorSecret {
    type Err = SecretError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}
