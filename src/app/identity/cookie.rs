//! The signed `rr_vid` cookie: carries a visitor's identity token so that a browser keeps its
//! identity after the fingerprint salt rotates.
//!
//! Hand-written rather than the `cookie` crate's signed jar: the value is 32 raw bytes plus an
//! HMAC we already compute for visitor keys, and the jar's key derivation would add crates for
//! no gain.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{IdentityToken, VisitorSecret};

/// Name of the visitor cookie.
pub const COOKIE_NAME: &str = "rr_vid";

/// Cookie lifetime: one year (browsers cap cookies at 400 days; the issue allows 13 months).
pub const COOKIE_MAX_AGE_SECS: u64 = 365 * 24 * 60 * 60;

const VERSION: &str = "v1";

fn mac(secret: &VisitorSecret, token: &IdentityToken) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose()).expect("HMAC takes any key length");
    mac.update(b"reader-reactions/cookie/v1\0");
    mac.update(&token.0);
    mac
}

/// `v1.<token>.<signature>`, both base64url.
pub fn sign(secret: &VisitorSecret, token: &IdentityToken) -> String {
    let signature = mac(secret, token).finalize().into_bytes();
    format!("{VERSION}.{}.{}", URL_SAFE_NO_PAD.encode(token.0), URL_SAFE_NO_PAD.encode(signature))
}

/// The token in a cookie value, if the signature verifies under `secret` (constant time).
pub fn verify(secret: &VisitorSecret, value: &str) -> Option<IdentityToken> {
    let mut parts = value.split('.');
    let (Some(VERSION), Some(token), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let token: [u8; 32] = URL_SAFE_NO_PAD.decode(token).ok()?.try_into().ok()?;
    let token = IdentityToken(token);
    let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
    mac(secret, &token).verify_slice(&signature).ok()?;
    Some(token)
}

/// Every `rr_vid` value in a request's `Cookie` header fields.
pub fn cookie_values<'a>(fields: impl IntoIterator<Item = &'a str>) -> impl Iterator<Item = &'a str> {
    fields.into_iter().flat_map(|value| value.split(';')).filter_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        (name == COOKIE_NAME).then(|| value.trim_matches('"'))
    })
}

/// The `Set-Cookie` field value that stores `token` in the browser (base64url and ASCII
/// attributes: a valid header value).
pub fn set_cookie(secret: &VisitorSecret, token: &IdentityToken, secure: bool) -> String {
    let attributes = if secure { "Secure; SameSite=None" } else { "SameSite=Lax" };
    format!(
        "{COOKIE_NAME}={}; Path=/; Max-Age={COOKIE_MAX_AGE_SECS}; HttpOnly; {attributes}",
        sign(secret, token)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_cookie_verifies_and_any_tampering_is_rejected() {
        let secret = VisitorSecret::from_bytes(vec![7; 32]);
        let token = IdentityToken([42; 32]);
        let value = sign(&secret, &token);
        assert_eq!(verify(&secret, &value), Some(token));

        let other_secret = VisitorSecret::from_bytes(vec![8; 32]);
        let mut flipped = value.clone().into_bytes();
        let i = 10;
        flipped[i] = if flipped[i] == b'A' { b'B' } else { b'A' };
        let cases = [
            (verify(&other_secret, &value), "foreign secret"),
            (verify(&secret, std::str::from_utf8(&flipped).unwrap()), "flipped token byte"),
            (verify(&secret, &value[..value.len() - 2]), "truncated signature"),
            (verify(&secret, &value.replacen("v1", "v2", 1)), "unknown version"),
            (verify(&secret, ""), "empty"),
            (verify(&secret, "v1.x.y"), "not base64 of the right length"),
            (verify(&secret, &format!("{value}.extra")), "extra part"),
        ];
        for (result, why) in cases {
            assert_eq!(result, None, "{why}");
        }
    }

    #[test]
    fn cookie_values_are_found_among_other_cookies() {
        let fields = ["a=1; rr_vid=v1.abc.def; b=2", "rr_vid2=no"];
        assert_eq!(cookie_values(fields).collect::<Vec<_>>(), ["v1.abc.def"]);
    }

    #[test]
    fn set_cookie_has_the_contract_attributes() {
        let secret = VisitorSecret::from_bytes(vec![7; 32]);
        let token = IdentityToken([1; 32]);
        let lax = set_cookie(&secret, &token, false);
        let cross_site = set_cookie(&secret, &token, true);
        assert!(lax.ends_with("HttpOnly; SameSite=Lax"));
        assert!(!lax.contains("Secure"), "not Secure unless configured: {lax:?}");
        assert!(cross_site.ends_with("HttpOnly; Secure; SameSite=None"));
        assert!(cross_site.contains("Max-Age=31536000"));
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn secret() -> impl Strategy<Value = VisitorSecret> {
        prop::collection::vec(any::<u8>(), 32..64).prop_map(VisitorSecret::from_bytes)
    }

    fn token() -> impl Strategy<Value = IdentityToken> {
        any::<[u8; 32]>().prop_map(IdentityToken)
    }

    proptest! {
        #[test]
        fn a_signed_value_verifies_to_its_token_and_only_under_its_secret(
            secret in secret(), other in secret(), token in token(),
        ) {
            let value = sign(&secret, &token);
            prop_assert_eq!(verify(&secret, &value), Some(token));
            if other.expose() != secret.expose() {
                prop_assert_eq!(verify(&other, &value), None);
            }
            // What the browser returns is what Set-Cookie stored.
            let stored = set_cookie(&secret, &token, false);
            let pair = stored.split(';').next().unwrap();
            let field = format!("a=1; {pair}");
            prop_assert_eq!(cookie_values([field.as_str()]).collect::<Vec<_>>(), [value.as_str()]);
        }

        /// Changing any one character of a signed value makes it fail: the token and the
        /// signature both count, and base64 with stray trailing bits is refused.
        #[test]
        fn any_one_character_changed_is_rejected(
            secret in secret(), token in token(), at in any::<prop::sample::Index>(),
            replacement in prop::sample::select(b"AaZz09-_.=+/ ".to_vec()),
        ) {
            let value = sign(&secret, &token);
            let at = at.index(value.len());
            prop_assume!(value.as_bytes()[at] != replacement);
            let mut tampered = value.into_bytes();
            tampered[at] = replacement;
            prop_assert_eq!(verify(&secret, std::str::from_utf8(&tampered).unwrap()), None);
        }

        /// Arbitrary cookie values never panic and never verify: mostly well-formed ones (a
        /// 32-byte token and a signature of about the right length, both valid base64url), which
        /// only the signature check refuses.
        #[test]
        fn arbitrary_values_are_rejected_without_panicking(
            raw in prop_oneof![
                1 => ".{0,200}",
                1 => "v1\\.[A-Za-z0-9_-]{0,60}\\.[A-Za-z0-9_-]{0,60}",
                4 => (any::<[u8; 32]>(), prop::collection::vec(any::<u8>(), 30..34)).prop_map(|(token, signature)| {
                    format!("v1.{}.{}", URL_SAFE_NO_PAD.encode(token), URL_SAFE_NO_PAD.encode(signature))
                }),
            ],
        ) {
            let secret = VisitorSecret::from_bytes(vec![9; 32]);
            prop_assert_eq!(verify(&secret, &raw), None);
        }
    }
}
