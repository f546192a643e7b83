//! Resource keys: what a licence grants. `users` (mailboxes), `domains`, and `module:<code>` for
//! each add-on module of the catalogue. The allocation engine treats them all alike; this module
//! only says which spellings are well-formed (whether a module exists is the catalogue's say).

use std::fmt;
use std::str::FromStr;

/// What a module's resource key starts with: `module:<code>`.
pub(crate) const MODULE_PREFIX: &str = "module:";

/// The resource key of module `code`.
pub(crate) fn module_key(code: &str) -> String {
    format!("{MODULE_PREFIX}{code}")
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    Users,
    Domains,
    Module(String),
}

impl Resource {
    pub fn key(&self) -> String {
        self.to_string()
    }

    pub fn module_code(&self) -> Option<&str> {
        match self {
            Self::Module(code) => Some(code),
            _ => None,
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Users => f.write_str("users"),
            Self::Domains => f.write_str("domains"),
            Self::Module(code) => write!(f, "{MODULE_PREFIX}{code}"),
        }
    }
}

/// A module code: 1–32 of lowercase ASCII letters, digits and `_`, starting with a letter.
pub(crate) fn is_module_code(code: &str) -> bool {
    let mut chars = code.chars();
    code.len() <= 32
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a resource: use `users`, `domains` or `module:<code>`")]
pub struct BadResource(pub String);

impl FromStr for Resource {
    type Err = BadResource;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "users" => Ok(Self::Users),
            "domains" => Ok(Self::Domains),
            _ => match s.strip_prefix(MODULE_PREFIX) {
                Some(code) if is_module_code(code) => Ok(Self::Module(code.to_owned())),
                _ => Err(BadResource(s.to_owned())),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_keys_parse_and_print_alike() {
        for key in ["users", "domains", "module:lft", "module:sign_encrypt"] {
            assert_eq!(key.parse::<Resource>().unwrap().to_string(), key);
        }
        for bad in [
            "Users",
            "mailboxes",
            "module:",
            "module:LFT",
            "module:1x",
            "module:a-b",
            "",
        ] {
            assert!(bad.parse::<Resource>().is_err(), "{bad}");
        }
    }
}
