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

/// A mailbox address: a local part as given (RFC 5321/5322 dot-atom or quoted string, UTF-8
/// allowed per RFC 6531) at a [`DomainName`]. Domains compare case-insensitively (they are
/// normalised); local parts compare exactly as stored, as RFC 5321 leaves them to the receiver.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MailAddress {
    local: String,
    domain: DomainName,
}

/// The role addresses every domain has: they consume no seat and go only with their domain.
pub const ROLE_LOCAL_PARTS: [&str; 2] = ["postmaster", "abuse"];

impl MailAddress {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let (local, domain) = raw
            .rsplit_once('@')
            .ok_or_else(|| "must be local-part@domain".to_owned())?;
        let domain = DomainName::parse(domain).map_err(|m| format!("has a domain that {m}"))?;
        check_local(local)?;
        let address = Self {
            local: local.to_owned(),
            domain,
        };
        if address.stored().len() > 254 {
            return Err("must be at most 254 characters".to_owned());
        }
        Ok(address)
    }

    /// For a role address on `domain`.
    pub fn role(local: &str, domain: &DomainName) -> Self {
        Self {
            local: local.to_owned(),
            domain: domain.clone(),
        }
    }

    pub fn local(&self) -> &str {
        &self.local
    }

    pub fn domain(&self) -> &DomainName {
        &self.domain
    }

    /// `local@ascii-domain`: how it is stored, compared and matched by mail workers.
    pub fn stored(&self) -> String {
        format!("{}@{}", self.local, self.domain.as_str())
    }

    /// `local@unicode-domain`, for people.
    pub fn display(&self) -> String {
        format!("{}@{}", self.local, self.domain.unicode())
    }

    /// Whether this is one of the reserved role addresses.
    pub fn is_role(&self) -> bool {
        ROLE_LOCAL_PARTS
            .iter()
            .any(|role| self.local.eq_ignore_ascii_case(role))
    }

    /// Wraps an address read back from the database, which only ever holds parsed ones.
    pub fn from_stored(local: String, domain: DomainName) -> Self {
        Self { local, domain }
    }
}

fn check_local(local: &str) -> Result<(), String> {
    if local.is_empty() {
        return Err("must have a local part before the @".to_owned());
    }
    if local.len() > 64 {
        return Err("must have a local part of at most 64 bytes".to_owned());
    }
    if let Some(inner) = local.strip_prefix('"').and_then(|l| l.strip_suffix('"')) {
        // A quoted string: any printable character, with `"` and `\` escaped by `\`.
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' if chars.next().is_none_or(char::is_control) => {
                    return Err("has a quoted local part with a dangling \\".to_owned());
                }
                '\\' => {}
                '"' => return Err("has a quoted local part with an unescaped \"".to_owned()),
                c if c.is_control() => return Err("must not contain control characters".to_owned()),
                _ => {}
            }
        }
        return Ok(());
    }
    let atext = |c: char| {
        c.is_ascii_alphanumeric()
            || "!#$%&'*+-/=?^_`{|}~".contains(c)
            || (!c.is_ascii() && !c.is_control() && !c.is_whitespace())
    };
    if local
        .split('.')
        .any(|atom| atom.is_empty() || !atom.chars().all(atext))
    {
        return Err("has a local part that is neither dot-separated atoms (letters, digits, !#$%&'*+-/=?^_`{|}~, any non-ASCII letter) nor a quoted string".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod mail_tests {
    use super::MailAddress;

    #[test]
    fn addresses_keep_their_local_part_and_normalise_their_domain() {
        let a = MailAddress::parse("Jane.Doe@Example.COM").unwrap();
        assert_eq!(a.stored(), "Jane.Doe@example.com");
        let idn = MailAddress::parse("山田太郎@株式.会社").unwrap();
        assert_eq!(idn.display(), "山田太郎@株式.会社");
        assert!(
            idn.stored().starts_with("山田太郎@xn--"),
            "{}",
            idn.stored()
        );
        assert_eq!(idn.domain().unicode(), "株式.会社");
        assert!(MailAddress::parse("\"john smith\"@example.com").is_ok());
        assert!(MailAddress::parse("\"a\\\"b\"@example.com").is_ok());
        assert!(MailAddress::parse("o'brien+tag@example.com").is_ok());
        assert!(
            MailAddress::parse("Postmaster@example.com")
                .unwrap()
                .is_role()
        );
    }

    #[test]
    fn malformed_addresses_are_refused() {
        for bad in [
            "no-at-sign",
            "@example.com",
            "a..b@example.com",
            ".a@example.com",
            "a b@example.com",
            "a@localhost",
            "\"open@example.com",
            "a\u{7}b@example.com",
        ] {
            assert!(MailAddress::parse(bad).is_err(), "{bad}");
        }
        assert!(
            MailAddress::parse(&format!("{}@example.com", "a".repeat(65)))
                .unwrap_err()
                .contains("64")
        );
    }
}
