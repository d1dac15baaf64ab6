//! Bearer tokens: hashed at rest (`sha256:<hex>`), compared in constant time, never logged.
//!
//! Tokens are random secrets chosen by the admin, so a fast hash is enough: the hash only keeps a
//! config file or backup from leaking a usable token.

use sha2::{Digest, Sha256};
use std::fmt;
use subtle::{ConditionallySelectable, ConstantTimeEq};

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
        self.position(presented).is_some()
    }

    /// Which accepted token `presented` is (its position in the set), found the same
    /// constant-time way as [`TokenSet::verify`]. Rate limits are kept per position, so that
    /// nothing a client sends can add an entry.
    pub fn position(&self, presented: &str) -> Option<usize> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut ok = subtle::Choice::from(0u8);
        let mut at = 0u64;
        for (i, h) in self.hashes.iter().enumerate() {
            let eq = h.ct_eq(&digest);
            at.conditional_assign(&(i as u64), eq);
            ok |= eq;
        }
        bool::from(ok).then_some(at as usize)
    }

    /// Checks an `Authorization` header value. `Bearer <t>` is the norm; a bare `<t>` is also
    /// accepted because some Okta connector types send the token without the scheme.
    pub fn verify_header(&self, header: Option<&str>) -> bool {
        self.position_of_header(header).is_some()
    }

    /// [`TokenSet::position`] of the token in an `Authorization` header value.
    pub fn position_of_header(&self, header: Option<&str>) -> Option<usize> {
        let h = header?.trim();
        let token = match h.split_once(' ') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
            _ => h,
        };
        if token.is_empty() {
            return None;
        }
        self.position(token)
    }

    /// The start of the hash of the token at `index` (`sha256:` and 12 hex digits), to name a
    /// token in the log: it matches the start of its `token_hashes` entry, or of what
    /// `scim-sync hash-token` prints for a token given in the environment.
    pub fn fingerprint(&self, index: usize) -> Option<String> {
        self.hashes
            .get(index)
            .map(|h| format!("{PREFIX}{}", hex::encode(h.get(..6).unwrap_or_default())))
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
    fn positions_and_fingerprints_name_the_matching_token() {
        let mut set = TokenSet::new();
        assert!(set.add_hash(&hash_token("first")).is_ok());
        set.add_plain("second");
        assert_eq!(set.position("first"), Some(0));
        assert_eq!(set.position("second"), Some(1));
        assert_eq!(set.position("third"), None);
        assert_eq!(set.position_of_header(Some("Bearer second")), Some(1));
        assert_eq!(set.position_of_header(Some("Bearer ")), None);
        let fp = set.fingerprint(1).unwrap_or_default();
        assert_eq!(fp.len(), "sha256:".len() + 12);
        assert!(hash_token("second").starts_with(&fp), "{fp}");
        assert_eq!(set.fingerprint(2), None);
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
