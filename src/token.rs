//! Bearer tokens: hashed at rest (`sha256:<hex>`), compared in constant time, never logged.
//!
//! Tokens are random secrets chosen by the admin, so a fast hash is enough: the hash only keeps a
//! config file or backup from leaking a usable token.

use sha2::{Digest, Sha256};
use std::fmt;
use subtle::ConstantTimeEq;

const PREFIX: &str = "sha256:";

/// Hash of a token in the form stored in config (`sha256:<64 hex digits>`).
pub fn hash_token(token: &str) -> String {
    format!("{PREFIX}{}", hex::encode(Sha256::digest(token.as_bytes())))
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("'{0}' is not a token hash: expected sha256:<64 hex digits>, as printed by `scim-sync hash-token`")]
pub struct BadHash(pub String);

/// The set of tokens accepted on one listener. Several may be valid at once (rotation).
#[derive(Clone, Default)]
pub struct TokenSet {
    hashes: Vec<[u8; 32]>,
}

impl fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenSet({} tokens)", self.hashes.len())
    }
}

impl TokenSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add_plain(&mut self, token: &str) {
        self.hashes.push(Sha256::digest(token.as_bytes()).into());
    }

    pub fn add_hash(&mut self, hash: &str) -> Result<(), BadHash> {
        let hex_part = hash
            .strip_prefix(PREFIX)
            .ok_or_else(|| BadHash(hash.to_string()))?;
        let bytes = hex::decode(hex_part).map_err(|_| BadHash(hash.to_string()))?;
        let arr: [u8; 32] = bytes.try_into().map_err(|_| BadHash(hash.to_string()))?;
        self.hashes.push(arr);
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// Checks a presented token against every accepted hash without an early exit, so the time
    /// taken does not tell which (or whether a) prefix matched.
    pub fn verify(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut ok = subtle::Choice::from(0u8);
        for h in &self.hashes {
            ok |= h.ct_eq(&digest);
        }
        bool::from(ok)
    }

    /// Checks an `Authorization` header value. `Bearer <t>` is the norm; a bare `<t>` is also
    /// accepted because some Okta connector types send the token without the scheme.
    pub fn verify_header(&self, header: Option<&str>) -> bool {
        let Some(h) = header else { return false };
        let h = h.trim();
        let token = match h.split_once(' ') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
            _ => h,
        };
        !token.is_empty() && self.verify(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_roundtrip_and_rotation() {
        let mut set = TokenSet::new();
        assert!(set.add_hash(&hash_token("old")).is_ok());
        set.add_plain("new");
        assert!(set.verify("old"));
        assert!(set.verify("new"));
        assert!(!set.verify("other"));
        assert!(set.verify_header(Some("Bearer new")));
        assert!(set.verify_header(Some("bearer  old ")));
        assert!(set.verify_header(Some("new")));
        assert!(!set.verify_header(Some("Bearer ")));
        assert!(!set.verify_header(None));
    }

    #[test]
    fn bad_hashes_are_rejected() {
        let mut set = TokenSet::new();
        assert!(set.add_hash("abc").is_err());
        assert!(set.add_hash("sha256:zz").is_err());
        assert!(set.add_hash("sha256:abcd").is_err());
        assert!(set.is_empty());
    }

    #[test]
    fn debug_does_not_show_hashes() {
        let mut set = TokenSet::new();
        set.add_plain("secret");
        assert_eq!(format!("{set:?}"), "TokenSet(1 tokens)");
    }
}
