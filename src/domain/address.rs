//! Domain names as allot keeps them: normalised by UTS #46 (IDNA), stored as lowercase ASCII
//! (punycode), shown in Unicode too. Parse, don't validate: once a [`DomainName`] exists it is
//! valid, and no raw string domain travels further.

use std::fmt;

use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DomainName(String);

impl DomainName {
    /// Normalises `raw` (trimmed, one trailing dot dropped, case folded, IDNA mapped) and checks
    /// the DNS rules, each refusal naming the rule that failed.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let trimmed = raw.trim();
        let name = trimmed.strip_suffix('.').unwrap_or(trimmed);
        if name.is_empty() {
            return Err("must not be empty".to_owned());
        }
        let ascii = Uts46::new()
            .to_ascii(name.as_bytes(), AsciiDenyList::STD3, Hyphens::Check, DnsLength::Ignore)
            .map_err(|_| {
                "is not a valid domain name: letters, digits and hyphens in dot-separated labels, no label starting or ending with a hyphen (IDNA UTS #46)".to_owned()
            })?
            .into_owned();
        let labels: Vec<&str> = ascii.split('.').collect();
        if labels.len() < 2 {
            return Err("must have at least two labels, like example.com".to_owned());
        }
        if let Some(label) = labels.iter().find(|l| l.is_empty() || l.len() > 63) {
            return Err(format!(
                "every label must be 1 to 63 characters (in ASCII form), not {:?}",
                label
            ));
        }
        if ascii.len() > 253 {
            return Err("must be at most 253 characters in ASCII form".to_owned());
        }
        Ok(Self(ascii))
    }

    /// The ASCII (punycode) form, lowercase: how it is stored and compared.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The Unicode form, for people.
    pub fn unicode(&self) -> String {
        idna::domain_to_unicode(&self.0).0
    }

    /// Wraps a name read back from the database, which only ever holds parsed names.
    pub fn from_stored(ascii: String) -> Self {
        Self(ascii)
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::DomainName;

    #[test]
    fn names_are_normalised_to_lowercase_ascii_and_shown_in_unicode() {
        let name = DomainName::parse(" Example.COM. ").unwrap();
        assert_eq!(name.as_str(), "example.com");
        let idn = DomainName::parse("Bücher.example").unwrap();
        assert_eq!(idn.as_str(), "xn--bcher-kva.example");
        assert_eq!(idn.unicode(), "bücher.example");
        assert_eq!(
            DomainName::parse("株式.会社").unwrap().unicode(),
            "株式.会社"
        );
        assert_eq!(DomainName::parse("xn--bcher-kva.example").unwrap(), idn);
    }

    #[test]
    fn each_broken_rule_is_named() {
        assert!(
            DomainName::parse("localhost")
                .unwrap_err()
                .contains("two labels")
        );
        assert!(
            DomainName::parse(&format!("{}.com", "a".repeat(64)))
                .unwrap_err()
                .contains("63")
        );
        let long = format!("{}.com", vec!["a".repeat(60); 5].join("."));
        assert!(DomainName::parse(&long).unwrap_err().contains("253"));
        assert!(DomainName::parse("a..com").unwrap_err().contains("label"));
        assert!(DomainName::parse("-bad.com").is_err());
        assert!(DomainName::parse("under_score.com").is_err());
        assert!(DomainName::parse("").unwrap_err().contains("empty"));
        assert!(DomainName::parse("exa mple.com").is_err());
    }
}
