//! Who reacted, as the store sees it: keyed hashes only.
//!
//! A visitor is named by an `X-Visitor-Id` ([`VisitorId`]) or by an [`IdentityToken`] (minted from
//! a fingerprint and carried by the signed cookie); either is reduced to a [`VisitorKey`], an
//! HMAC under the service's [`VisitorSecret`], before anything stores it. How a request is
//! resolved to one of them is the identity layer's business (`identity`, `http::identity`).
//!
//! [`VisitorKey`]: crate::domain::VisitorKey
//! [`VisitorSecret`]: crate::domain::VisitorSecret

use std::fmt;
use std::net::IpAddr;

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// The stable, anonymous key under which a visitor's reactions are stored: HMAC-SHA-256 of the
/// visitor's identity under the service secret. Not reversible without the secret, and equal
/// across instances that share the secret.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct VisitorKey([u8; 32]);

impl VisitorKey {
    /// The key of a visitor who sent a valid `X-Visitor-Id` header.
    pub fn from_header_id(secret: &VisitorSecret, id: &VisitorId) -> Self {
        Self::derive(secret, b"header", id.0.as_bytes())
    }

    /// The key of a visitor identified by a cookie's or a fingerprint's token. Both use the same
    /// derivation, so a fingerprinted write and the cookie it sets name the same visitor.
    pub fn from_token(secret: &VisitorSecret, token: &IdentityToken) -> Self {
        Self::derive(secret, b"token", &token.0)
    }

    /// Domain-separated HMAC: `kind`, a NUL separator, then the identity bytes. Different kinds of
    /// identity can never collide.
    fn derive(secret: &VisitorSecret, kind: &[u8], identity: &[u8]) -> Self {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose()).expect("HMAC takes any key length");
        mac.update(b"reader-reactions/visitor-key/v1\0");
        mac.update(kind);
        mac.update(b"\0");
        mac.update(identity);
        Self(mac.finalize().into_bytes().into())
    }

    /// The 32 bytes stored in the database.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for VisitorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A prefix is enough to correlate log lines; the full key stays out of logs.
        write!(f, "VisitorKey({:02x}{:02x}{:02x}{:02x}…)", self.0[0], self.0[1], self.0[2], self.0[3])
    }
}

/// An anonymous identity minted from a fingerprint and carried by the signed cookie. It is
/// itself a keyed hash; storage sees only a further keyed hash of it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IdentityToken(pub(crate) [u8; 32]);

impl fmt::Debug for IdentityToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdentityToken(<redacted>)")
    }
}

/// A syntactically valid `X-Visitor-Id` value: 8–128 characters of `[A-Za-z0-9_-]`.
#[derive(Clone, PartialEq, Eq)]
pub struct VisitorId(String);

/// Why an `X-Visitor-Id` header was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VisitorIdError {
    #[error("X-Visitor-Id must be 8 to 128 characters long, got {0}")]
    Length(usize),
    #[error("X-Visitor-Id may contain only A-Z, a-z, 0-9, '_' and '-'")]
    Charset,
    #[error("X-Visitor-Id was sent more than once")]
    Repeated,
}

impl VisitorId {
    pub fn parse(raw: &[u8]) -> Result<Self, VisitorIdError> {
        if !(8..=128).contains(&raw.len()) {
            return Err(VisitorIdError::Length(raw.len()));
        }
        if !raw.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-') {
            return Err(VisitorIdError::Charset);
        }
        // Checked above: ASCII only.
        Ok(Self(String::from_utf8_lossy(raw).into_owned()))
    }
}

impl fmt::Debug for VisitorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VisitorId(<redacted>)")
    }
}

/// Shortest `VISITOR_SECRET` we accept; shorter keys would weaken the visitor hashes.
pub const MIN_SECRET_BYTES: usize = 32;

/// The server-side key for visitor hashes (and, later, cookie signatures).
///
/// Comes from `VISITOR_SECRET`, or is generated once and kept (see
/// `app::identity::resolve_secret`) so that restarts and other instances agree. Never printed.
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

/// The network a client address belongs to: its IPv4 /24 or its IPv6 /48.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientNetwork {
    /// The first three octets of an IPv4 address (also of an IPv4-mapped IPv6 one).
    V4([u8; 3]),
    /// The first six octets (48 bits) of an IPv6 address.
    V6([u8; 6]),
}

impl ClientNetwork {
    /// The network of `ip`.
    pub fn of(ip: IpAddr) -> Self {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match ip {
            IpAddr::V4(v4) => {
                let [a, b, c, _] = v4.octets();
                Self::V4([a, b, c])
            }
            IpAddr::V6(v6) => {
                let o = v6.octets();
                Self::V6([o[0], o[1], o[2], o[3], o[4], o[5]])
            }
        }
    }
}

/// The keyed hash under which a write's network is stored: the first 16 bytes of HMAC-SHA-256,
/// under the service secret, of the day's salt and the network. Domain-separated from the
/// visitor keys and the fingerprints, so that no value of one can equal a value of another.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct NetworkKey([u8; 16]);

impl NetworkKey {
    /// The key of `network` under the day's `salt`. Fields are length-prefixed, and the family is
    /// part of the message, so an IPv4 /24 and an IPv6 /48 never share a key.
    pub fn derive(secret: &VisitorSecret, salt: &[u8], network: ClientNetwork) -> Self {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose()).expect("HMAC takes any key length");
        mac.update(b"reader-reactions/network/v1\0");
        let (family, prefix): (&[u8], &[u8]) = match &network {
            ClientNetwork::V4(prefix) => (b"ipv4/24", prefix),
            ClientNetwork::V6(prefix) => (b"ipv6/48", prefix),
        };
        for field in [salt, family, prefix] {
            mac.update(&(field.len() as u64).to_be_bytes());
            mac.update(field);
        }
        let digest = mac.finalize().into_bytes();
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        Self(key)
    }

    /// The 16 bytes stored in the database.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Debug for NetworkKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NetworkKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visitor_id_accepts_the_contract_alphabet_and_lengths() {
        for ok in ["abcdefgh", "A-Z_0-9-abc", &"x".repeat(128)] {
            assert!(VisitorId::parse(ok.as_bytes()).is_ok(), "{ok:?} should be accepted");
        }
        let cases: [(&[u8], VisitorIdError); 5] = [
            (b"short", VisitorIdError::Length(5)),
            (&[b'x'; 129], VisitorIdError::Length(129)),
            (b"has space!", VisitorIdError::Charset),
            (b"dots.are.out", VisitorIdError::Charset),
            ("ünïcödé-id".as_bytes(), VisitorIdError::Charset),
        ];
        for (raw, expected) in cases {
            assert_eq!(VisitorId::parse(raw), Err(expected), "{raw:?}");
        }
    }

    #[test]
    fn keys_depend_on_secret_and_id_and_never_contain_the_id() {
        let a = VisitorSecret::from_bytes(vec![1; 32]);
        let b = VisitorSecret::from_bytes(vec![2; 32]);
        let id = VisitorId::parse(b"reader-0001").unwrap();
        let other = VisitorId::parse(b"reader-0002").unwrap();
        assert_eq!(VisitorKey::from_header_id(&a, &id), VisitorKey::from_header_id(&a, &id));
        assert_ne!(VisitorKey::from_header_id(&a, &id), VisitorKey::from_header_id(&b, &id));
        assert_ne!(VisitorKey::from_header_id(&a, &id), VisitorKey::from_header_id(&a, &other));
        let key = VisitorKey::from_header_id(&a, &id);
        assert!(!key.as_bytes().windows(4).any(|w| w == b"read"));
    }

    /// The stored bytes are the documented HMAC, computed here independently: a change of the
    /// derivation (or of its domain separation) would orphan every stored reaction.
    #[test]
    fn keys_are_the_documented_hmac() {
        let secret = VisitorSecret::from_bytes(vec![1; 32]);
        let hmac = |message: &[u8]| {
            let mut mac = Hmac::<Sha256>::new_from_slice(&[1; 32]).unwrap();
            mac.update(message);
            <[u8; 32]>::from(mac.finalize().into_bytes())
        };
        let id = VisitorId::parse(b"reader-0001").unwrap();
        let header = VisitorKey::from_header_id(&secret, &id);
        assert_eq!(header.as_bytes(), &hmac(b"reader-reactions/visitor-key/v1\0header\0reader-0001"));
        let token = VisitorKey::from_token(&secret, &IdentityToken([9; 32]));
        let mut message = b"reader-reactions/visitor-key/v1\0token\0".to_vec();
        message.extend([9; 32]);
        assert_eq!(token.as_bytes(), &hmac(&message));
    }

    /// Debug output reaches logs: it never shows a visitor id, a token or a whole key.
    #[test]
    fn debug_output_keeps_identities_out_of_logs() {
        let secret = VisitorSecret::from_bytes(vec![1; 32]);
        let id = VisitorId::parse(b"reader-secret-id").unwrap();
        assert_eq!(format!("{id:?}"), "VisitorId(<redacted>)");
        assert_eq!(format!("{:?}", IdentityToken([0xab; 32])), "IdentityToken(<redacted>)");
        let key = VisitorKey::from_header_id(&secret, &id);
        let bytes = key.as_bytes();
        let prefix = format!("{:02x}{:02x}{:02x}{:02x}", bytes[0], bytes[1], bytes[2], bytes[3]);
        assert_eq!(format!("{key:?}"), format!("VisitorKey({prefix}…)"));
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn alphabet(byte: u8) -> bool {
        byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-'
    }

    /// Header values: any bytes, mostly from the alphabet so that valid ones come up often.
    fn raw_header() -> impl Strategy<Value = Vec<u8>> {
        let byte = prop_oneof![
            8 => prop::sample::select(b"abcXYZ019_-".to_vec()),
            2 => any::<u8>(),
            1 => prop::sample::select(b" .,;=\0\xff\x80\t".to_vec()),
        ];
        prop_oneof![prop::collection::vec(byte.clone(), 0..20), prop::collection::vec(byte, 120..140)]
    }

    proptest! {
        #[test]
        fn parse_accepts_exactly_8_to_128_characters_of_the_alphabet(raw in raw_header()) {
            let expected = (8..=128).contains(&raw.len()) && raw.iter().copied().all(alphabet);
            match VisitorId::parse(&raw) {
                Ok(id) => {
                    prop_assert!(expected, "accepted {raw:?}");
                    prop_assert_eq!(id.0.as_bytes(), raw.as_slice());
                }
                Err(VisitorIdError::Length(n)) => prop_assert!(n == raw.len() && !(8..=128).contains(&n)),
                Err(VisitorIdError::Charset) => prop_assert!(!expected && !raw.iter().copied().all(alphabet)),
                Err(VisitorIdError::Repeated) => prop_assert!(false, "parse never sees a repeat"),
            }
        }

        #[test]
        fn every_id_of_the_documented_pattern_is_accepted(raw in "[A-Za-z0-9_-]{8,128}") {
            prop_assert!(VisitorId::parse(raw.as_bytes()).is_ok());
        }

        /// Distinct ids get distinct keys, and the same id the same key (half the cases compare
        /// an id with itself).
        #[test]
        fn keys_are_a_function_of_the_id(
            a in "[A-Za-z0-9_-]{8,16}", other in "[A-Za-z0-9_-]{8,16}", same in any::<bool>(),
        ) {
            let b = if same { a.clone() } else { other };
            let secret = VisitorSecret::from_bytes(vec![3; 32]);
            let key = |raw: &str| VisitorKey::from_header_id(&secret, &VisitorId::parse(raw.as_bytes()).unwrap());
            prop_assert_eq!(key(&a) == key(&b), a == b);
        }
    }
}
