//! Standard Webhooks signatures: `v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")),
//! the key being the base64-decoded part of a `whsec_` secret.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The shortest key accepted, as the contract asks.
pub const MIN_SECRET_BYTES: usize = 24;

/// A webhook signing key.
pub struct WebhookSecret(Vec<u8>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(..)")
    }
}

impl WebhookSecret {
    /// Parses `whsec_` + base64 of at least `MIN_SECRET_BYTES` bytes; the error completes a
    /// sentence that starts with the setting's name, and never repeats the secret.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let Some(encoded) = raw.trim().strip_prefix("whsec_") else {
            return Err("must be whsec_ followed by base64 (the Standard Webhooks form)".to_owned());
        };
        let key = STANDARD.decode(encoded).map_err(|_| {
            "must be whsec_ followed by base64; the part after whsec_ is not base64".to_owned()
        })?;
        if key.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "must hold at least {MIN_SECRET_BYTES} bytes after whsec_ (got {}); generate one with \
                 `echo whsec_$(openssl rand -base64 32)`",
                key.len()
            ));
        }
        Ok(Self(key))
    }

    /// The `webhook-signature` header value for a message.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification's test suite (also the reference
    /// libraries' own test vector).
    #[test]
    fn signs_the_specifications_example_exactly() {
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn refuses_secrets_that_are_not_whsec_base64_of_24_bytes_without_repeating_them() {
        for bad in ["", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_not base64!", "whsec_c2hvcnQ="] {
            let why = WebhookSecret::parse(bad).unwrap_err();
            assert!(bad.is_empty() || !why.contains(bad), "{why}");
        }
    }
}
