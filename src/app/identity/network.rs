//! Client networks, for brigading-resistant trending: how many distinct networks an article's
//! reactions come from, counted without storing a network.
//!
//! A network is an IPv4 /24 or an IPv6 /48 (an IPv4-mapped IPv6 address is IPv4): the block a
//! single household, office or hosting customer usually holds, so that one attacker with many
//! addresses of one block still counts once. Each write stores only a [`NetworkKey`] (the types
//! are the domain's, the derivation under today's salt is here): a keyed
//! hash of the network under the service secret and the day's fingerprint salt. While the salt
//! lives (48 hours, see [`super::fingerprint`]) the holder of the secret and the salt could
//! recover a /24 by trying all 2^24 of them; once the salt is deleted, nobody can. Because the
//! salt changes every UTC day, so does a network's key: the same network counts once per day.

use std::net::IpAddr;

use super::SaltCache;
use crate::domain::{ClientNetwork, NetworkKey, VisitorSecret};

/// The network key of a write, carried from the identity layer to the write: `None` when the
/// day's salt could not be read (the write then stores no network and counts towards no
/// article's networks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteNetwork(pub Option<NetworkKey>);

impl WriteNetwork {
    /// The network key of a write from `ip`, under today's salt. Without the salt (the
    /// database unreachable for it) the write stores no network: one by header or cookie still
    /// succeeds, one by fingerprint has no visitor either and is refused.
    pub async fn of(secret: &VisitorSecret, salts: &SaltCache, ip: IpAddr) -> Self {
        match salts.current().await {
            Ok(salt) => Self(Some(NetworkKey::derive(secret, &salt, ClientNetwork::of(ip)))),
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "no fingerprint salt: the write's network is not stored"
                );
                Self(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, Mac};
    use sha2::Sha256;

    fn network(ip: &str) -> ClientNetwork {
        ClientNetwork::of(ip.parse().unwrap())
    }

    #[test]
    fn an_ipv4_network_is_its_slash_24() {
        assert_eq!(network("198.51.100.7"), ClientNetwork::V4([198, 51, 100]));
        assert_eq!(network("198.51.100.7"), network("198.51.100.254"), "the same /24");
        assert_eq!(network("198.51.100.0"), network("198.51.100.255"), "both ends of the /24");
        assert_ne!(network("198.51.100.7"), network("198.51.101.7"), "the next /24");
        assert_ne!(network("198.51.100.7"), network("199.51.100.7"));
        assert_eq!(network("127.10.3.1"), ClientNetwork::V4([127, 10, 3]), "the tests' loopback networks");
    }

    #[test]
    fn an_ipv6_network_is_its_slash_48() {
        assert_eq!(network("2001:db8:1234::1"), ClientNetwork::V6([0x20, 0x01, 0x0d, 0xb8, 0x12, 0x34]));
        assert_eq!(
            network("2001:db8:1234::1"),
            network("2001:db8:1234:ffff:ffff:ffff:ffff:ffff"),
            "the same /48"
        );
        assert_eq!(network("2001:db8:1234:1::"), network("2001:db8:1234:2::"), "two /64s of one /48");
        assert_ne!(network("2001:db8:1234::1"), network("2001:db8:1235::1"), "the next /48");
        assert_ne!(network("2001:db8:1234::1"), network("2001:db9:1234::1"));
    }

    #[test]
    fn an_ipv4_mapped_ipv6_address_is_its_ipv4_network() {
        assert_eq!(network("::ffff:198.51.100.7"), network("198.51.100.7"));
        assert_eq!(network("::ffff:198.51.100.7"), ClientNetwork::V4([198, 51, 100]));
        assert_ne!(network("::ffff:198.51.100.7"), network("::ffff:198.51.101.7"));
        // Not mapped: an IPv6 address whose last 32 bits look like an IPv4 address.
        assert_eq!(network("64:ff9b::198.51.100.7"), ClientNetwork::V6([0, 0x64, 0xff, 0x9b, 0, 0]));
        assert!(matches!(network("::1"), ClientNetwork::V6(_)), "the IPv6 loopback is IPv6");
    }

    /// The stored bytes are the documented HMAC, computed here independently.
    #[test]
    fn keys_are_the_documented_truncated_hmac() {
        let secret = VisitorSecret::from_bytes(vec![5; 32]);
        let salt = [7u8; 32];
        let mut message = b"reader-reactions/network/v1\0".to_vec();
        for field in [&salt[..], b"ipv4/24", &[198, 51, 100]] {
            message.extend((field.len() as u64).to_be_bytes());
            message.extend(field);
        }
        let mut mac = Hmac::<Sha256>::new_from_slice(&[5; 32]).unwrap();
        mac.update(&message);
        let digest = mac.finalize().into_bytes();
        let key = NetworkKey::derive(&secret, &salt, network("198.51.100.7"));
        assert_eq!(key.as_bytes()[..], digest[..16]);
    }

    #[test]
    fn keys_change_with_the_salt_the_secret_and_the_network() {
        let secret = VisitorSecret::from_bytes(vec![5; 32]);
        let (today, tomorrow) = ([1u8; 32], [2u8; 32]);
        let key =
            |secret: &VisitorSecret, salt: &[u8], ip: &str| NetworkKey::derive(secret, salt, network(ip));
        let base = key(&secret, &today, "198.51.100.7");
        assert_eq!(base, key(&secret, &today, "198.51.100.200"), "one /24, one key");
        assert_eq!(base, key(&secret, &today, "::ffff:198.51.100.9"), "mapped: the same key");
        assert_ne!(base, key(&secret, &tomorrow, "198.51.100.7"), "a new day, a new key");
        assert_ne!(base, key(&VisitorSecret::from_bytes(vec![6; 32]), &today, "198.51.100.7"));
        assert_ne!(base, key(&secret, &today, "198.51.101.7"));
        // An IPv6 /48 whose first three octets are those of the /24 is another network.
        assert_ne!(base, key(&secret, &today, "c633:6400::1"));
        assert_eq!(format!("{base:?}"), "NetworkKey(<redacted>)");
    }
}
