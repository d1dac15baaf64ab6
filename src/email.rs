//! One email type for the whole domain: normalised once, compared one way.
//!
//! An email is the only key that joins a SCIM user to a control-plane user, so two spellings that
//! a person reads as the same address must compare equal, and two that only look the same must
//! never be merged silently. The rules:
//! - Compared case-insensitively (lower-cased once, here). The original spelling is kept for
//!   lookups against a control plane that may match `email=` exactly.
//! - Refused, with a reason an operator can act on, when it holds whitespace (inside or around:
//!   `"kate@corp.io "` is not trimmed into `kate@corp.io`, which would let a second record claim
//!   her address), control or format characters (zero-width space, joiners, BOM), fullwidth or
//!   other compatibility forms (`ｋａｔｅ@corp.io`), or letters of more than one script (a Cyrillic
//!   `а` among Latin letters).
//! - Must look like `local@domain.tld`.

use serde::{Serialize, Serializer};
use std::fmt;

/// A normalised email address: lower-cased, checked. Equality and order are by the lower-cased
/// key only.
#[derive(Debug, Clone)]
pub struct Email {
    key: String,
    original: String,
}

impl PartialEq for Email {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for Email {}

impl PartialOrd for Email {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Email {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key.cmp(&other.key)
    }
}

impl std::hash::Hash for Email {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

/// Why a value is not accepted as an email.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("is empty")]
    Empty,
    #[error("'{0}' contains whitespace")]
    Whitespace(String),
    #[error("'{shown}' contains an invisible or control character (U+{code:04X})")]
    Invisible { shown: String, code: u32 },
    #[error("'{shown}' contains a fullwidth or compatibility character (U+{code:04X}) that imitates an ordinary one")]
    Compatibility { shown: String, code: u32 },
    #[error("'{0}' mixes letters of several scripts (a look-alike of another address)")]
    MixedScript(String),
    #[error("'{0}' is not of the form local@domain.tld")]
    Shape(String),
}

impl Email {
    pub fn parse(raw: &str) -> Result<Email, EmailError> {
        if raw.is_empty() {
            return Err(EmailError::Empty);
        }
        let shown = raw.escape_debug().to_string();
        for c in raw.chars() {
            if c.is_whitespace() {
                return Err(EmailError::Whitespace(shown));
            }
            if is_invisible(c) {
                return Err(EmailError::Invisible {
                    shown,
                    code: c as u32,
                });
            }
            if is_compatibility_form(c) {
                return Err(EmailError::Compatibility {
                    shown,
                    code: c as u32,
                });
            }
        }
        if mixes_scripts(raw) {
            return Err(EmailError::MixedScript(shown));
        }
        let Some((local, domain)) = raw.split_once('@') else {
            return Err(EmailError::Shape(shown));
        };
        if local.is_empty()
            || domain.contains('@')
            || !domain.contains('.')
            || domain.starts_with('.')
            || domain.ends_with('.')
            || domain.contains("..")
        {
            return Err(EmailError::Shape(shown));
        }
        Ok(Email {
            key: raw.to_lowercase(),
            original: raw.to_string(),
        })
    }

    /// The comparison key (lower-cased).
    pub fn as_str(&self) -> &str {
        &self.key
    }

    /// As the IdP sent it.
    pub fn original(&self) -> &str {
        &self.original
    }

    /// Whether a control-plane value names this address (case-insensitively, after the same
    /// checks: a control-plane row with a look-alike address is not this person).
    pub fn matches(&self, other: &str) -> bool {
        Email::parse(other).is_ok_and(|e| e.key == self.key)
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key)
    }
}

impl Serialize for Email {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.key)
    }
}

/// Control, format (zero-width space, joiners, word joiner, BOM, bidi marks) and other
/// characters that render as nothing.
fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(c as u32,
            0x00AD | 0x034F | 0x061C | 0x115F | 0x1160 | 0x17B4 | 0x17B5 | 0x180B..=0x180F
            | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F | 0x3164 | 0xFE00..=0xFE0F
            | 0xFEFF | 0xFFA0 | 0xFFF0..=0xFFFB | 0xE0000..=0xE0FFF)
}

/// Fullwidth and halfwidth forms, mathematical alphanumerics, enclosed and other compatibility
/// letters that NFKC folds onto ASCII.
fn is_compatibility_form(c: char) -> bool {
    matches!(c as u32,
        0xFF00..=0xFFEF | 0x1D400..=0x1D7FF | 0x2100..=0x214F | 0x2460..=0x24FF
        | 0x1F100..=0x1F1FF | 0xFB00..=0xFB4F | 0x2070..=0x209F | 0x1D00..=0x1DBF)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Script {
    Latin,
    Greek,
    Cyrillic,
    Armenian,
    Other,
}

fn script(c: char) -> Option<Script> {
    if !c.is_alphabetic() {
        return None;
    }
    Some(match c as u32 {
        0x0041..=0x024F | 0x1E00..=0x1EFF => Script::Latin,
        0x0370..=0x03FF | 0x1F00..=0x1FFF => Script::Greek,
        0x0400..=0x052F => Script::Cyrillic,
        0x0530..=0x058F => Script::Armenian,
        _ => Script::Other,
    })
}

/// Letters from two scripts in one label (local part or one domain label) are how look-alike
/// addresses are made; a whole address in one non-Latin script is left alone.
fn mixes_scripts(raw: &str) -> bool {
    raw.split(['@', '.']).any(|label| {
        let mut seen: Option<Script> = None;
        for s in label.chars().filter_map(script) {
            match seen {
                None => seen = Some(s),
                Some(prev) if prev != s => return true,
                Some(_) => {}
            }
        }
        false
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn case_is_folded_and_original_kept() {
        let e = Email::parse("John.Doe@Corp.com").unwrap();
        assert_eq!(e.as_str(), "john.doe@corp.com");
        assert_eq!(e.original(), "John.Doe@Corp.com");
        assert_eq!(e, Email::parse("john.doe@corp.COM").unwrap());
        assert!(e.matches("JOHN.DOE@corp.com"));
    }

    #[test]
    fn whitespace_is_refused_not_trimmed() {
        for s in [
            "KATE@corp.io ",
            " kate@corp.io",
            "ka te@corp.io",
            "kate@corp.io\t",
        ] {
            assert!(
                matches!(Email::parse(s), Err(EmailError::Whitespace(_))),
                "{s:?}"
            );
        }
    }

    #[test]
    fn look_alikes_are_refused() {
        assert!(matches!(
            Email::parse("kate\u{200B}@corp.io"),
            Err(EmailError::Invisible { code: 0x200B, .. })
        ));
        assert!(matches!(
            Email::parse("kate@corp.io\u{FEFF}"),
            Err(EmailError::Invisible { .. })
        ));
        assert!(matches!(
            Email::parse("ｋａｔｅ@corp.io"),
            Err(EmailError::Compatibility { .. })
        ));
        // Cyrillic 'а' (U+0430) inside a Latin name.
        assert!(matches!(
            Email::parse("k\u{0430}te@corp.io"),
            Err(EmailError::MixedScript(_))
        ));
        assert!(!Email::parse("kate@corp.io")
            .unwrap()
            .matches("k\u{0430}te@corp.io"));
    }

    #[test]
    fn shape() {
        assert!(Email::parse("bob").is_err());
        assert!(Email::parse("bob@localhost").is_err());
        assert!(Email::parse("@x.io").is_err());
        assert!(Email::parse("a@b@c.io").is_err());
        assert!(Email::parse("a@.io").is_err());
        assert!(Email::parse("").is_err());
        // One script throughout is an ordinary (internationalised) address.
        assert!(Email::parse("пётр@пример.рф").is_ok());
        assert!(Email::parse("josé.núñez@corp.es").is_ok());
    }
}
