//! Anonymous fingerprints: a keyed hash of (daily salt, client IP, User-Agent).
//!
//! The salt is random, one per UTC day, shared by all instances through the database and deleted
//! after 48 hours, so a fingerprint can be recomputed only while its salt lives. Unlike some page
//! analytics, the IP is the one our trusted-proxy walk resolves, never a client-supplied
//! `X-Forwarded-For` entry.

use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{IdentityToken, VisitorSecret};
use crate::store::{Store, StoreError};

/// How long an instance reuses the salt it read before asking the database again; bounds how
/// late an instance notices the day's rotation.
const SALT_REFRESH: Duration = Duration::from_secs(60);

/// The fingerprint token of a client under one salt. Fields are length-prefixed, so no choice
/// of User-Agent can make two different (IP, User-Agent) pairs collide.
pub fn token(secret: &VisitorSecret, salt: &[u8], ip: IpAddr, user_agent: &[u8]) -> IdentityToken {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose()).expect("HMAC takes any key length");
    mac.update(b"reader-reactions/fingerprint/v1\0");
    let ip = match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    };
    for field in [salt, &ip[..], user_agent] {
        mac.update(&(field.len() as u64).to_be_bytes());
        mac.update(field);
    }
    IdentityToken(mac.finalize().into_bytes().into())
}

struct CachedSalt {
    salt: Arc<[u8]>,
    day: chrono::NaiveDate,
    fetched: Instant,
}

/// Today's salt, read from the database at most once a minute per instance.
pub struct SaltCache {
    store: Store,
    cached: RwLock<Option<CachedSalt>>,
}

impl std::fmt::Debug for SaltCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaltCache").finish_non_exhaustive()
    }
}

impl SaltCache {
    pub fn new(store: Store) -> Self {
        Self { store, cached: RwLock::new(None) }
    }

    /// The current salt; creates today's when no instance has yet.
    pub async fn current(&self) -> Result<Arc<[u8]>, StoreError> {
        let today = chrono::Utc::now().date_naive();
        if let Some(cached) = self.cached.read().expect("salt lock").as_ref()
            && cached.day == today
            && cached.fetched.elapsed() < SALT_REFRESH
        {
            return Ok(cached.salt.clone());
        }
        let (day, salt) = self.store.current_salt().await?;
        let salt: Arc<[u8]> = salt.into();
        *self.cached.write().expect("salt lock") =
            Some(CachedSalt { salt: salt.clone(), day, fetched: Instant::now() });
        Ok(salt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_stable_within_a_salt_and_change_across_salts() {
        let secret = VisitorSecret::from_bytes(vec![3; 32]);
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        let ua = b"Mozilla/5.0 (X11; Linux x86_64)";
        let today = [1u8; 32];
        let tomorrow = [2u8; 32];

        assert_eq!(token(&secret, &today, ip, ua), token(&secret, &today, ip, ua), "stable");
        assert_ne!(token(&secret, &today, ip, ua), token(&secret, &tomorrow, ip, ua), "rotates");
        assert_ne!(
            token(&secret, &today, ip, ua),
            token(&secret, &today, "198.51.100.8".parse().unwrap(), ua)
        );
        assert_ne!(token(&secret, &today, ip, ua), token(&secret, &today, ip, b"curl/8.0"));
        let other_secret = VisitorSecret::from_bytes(vec![4; 32]);
        assert_ne!(token(&secret, &today, ip, ua), token(&other_secret, &today, ip, ua));
    }
}
