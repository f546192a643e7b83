//! Domain names as allot keeps them: normalised by UTS #46 (IDNA), stored as lowercase ASCII
//! (punycode), shown in Unicode too. Parse, don't validate: once a [`DomainName`] exists it is
//! valid, and no raw string domain travels further.
//!
//! Addresses: the local part is kept as given after Unicode NFC (so the composed and decomposed
//! spellings of "jörg" are one string), without invisible or bidirectional control characters.
//! Which addresses are the *same* is [`MailAddress::key`]: the domain in ASCII, and the local part
//! lowercased unless the customer compares local parts case-sensitively.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;

use icu_normalizer::ComposingNormalizerBorrowed;
use icu_properties::CodePointSetData;
use icu_properties::props::{BidiControl, DefaultIgnorableCodePoint};
use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};
use unicode_script::{Script, UnicodeScript};
use unicode_security::{RestrictionLevel, RestrictionLevelDetection};

use super::mail::LocalPartCase;

/// NFC with ICU4X's compiled tables (the ones idna maps domains with).
const NFC: ComposingNormalizerBorrowed<'static> = ComposingNormalizerBorrowed::new_nfc();

/// `text` in NFC; borrowed when it is already (ASCII always is).
pub(crate) fn nfc(text: &str) -> Cow<'_, str> {
    if text.is_ascii() {
        Cow::Borrowed(text)
    } else {
        NFC.normalize(text)
    }
}

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

    /// Refuses a name with a label that mixes scripts beyond UTS #39's "Highly Restrictive" level
    /// (one script, or Latin with Han and Japanese kana, Han and Bopomofo, or Han and Hangul):
    /// `pаypal` with a Cyrillic `а` passes IDNA but is a look-alike of a Latin name. The level
    /// Chrome shows Unicode names at; a label with a character UTS #39 does not recommend for
    /// identifiers at all (symbols, obsolete scripts) is refused too. For new registrations: a
    /// name already held is not judged again.
    pub fn check_scripts(&self) -> Result<(), String> {
        for label in self.unicode().split('.') {
            let level = label.detect_restriction_level();
            if level <= RestrictionLevel::HighlyRestrictive {
                continue;
            }
            if let Some(c) = label
                .chars()
                .find(|c| !unicode_security::GeneralSecurityProfile::identifier_allowed(*c))
            {
                return Err(format!(
                    "has the label {label:?} with {c:?} (U+{:04X}), which UTS #39 does not allow in identifiers",
                    u32::from(c)
                ));
            }
            let scripts: BTreeSet<&str> = label
                .chars()
                .map(|c| c.script())
                .filter(|s| !matches!(s, Script::Common | Script::Inherited | Script::Unknown))
                .map(Script::full_name)
                .collect();
            return Err(format!(
                "has the label {label:?}, which mixes the scripts {} (a look-alike of another name; UTS #39 allows one script per label, or Latin with Han, Japanese kana or Hangul)",
                scripts.into_iter().collect::<Vec<_>>().join(" and ")
            ));
        }
        Ok(())
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

/// A mailbox address: a local part as given in NFC (RFC 5321/5322 dot-atom or quoted string,
/// UTF-8 allowed per RFC 6531) at a [`DomainName`]. Equality is of the spelling; whether two
/// addresses are the same mailbox is [`MailAddress::key`], which depends on the customer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MailAddress {
    local: String,
    domain: DomainName,
}

/// The role addresses every domain has: they consume no seat and go only with their domain.
pub(crate) const ROLE_LOCAL_PARTS: [&str; 2] = ["postmaster", "abuse"];

impl MailAddress {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let (local, domain) = raw
            .rsplit_once('@')
            .ok_or_else(|| "must be local-part@domain".to_owned())?;
        let domain = DomainName::parse(domain).map_err(|m| format!("has a domain that {m}"))?;
        let local = nfc(local);
        check_local(&local)?;
        let address = Self {
            local: local.into_owned(),
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

    /// What makes two addresses the same mailbox for a customer comparing local parts as `case`
    /// says: `local@ascii-domain` with the local part in NFC and, when insensitive, lowercased by
    /// Unicode's toLowerCase (then NFC again), as RFC 8265 maps case-insensitive usernames. Not
    /// case *folding*: folding makes `straße` and `strasse` one, which are two spellings, not
    /// two cases. One allocation, the key itself; an ASCII local part needs no Unicode table.
    pub fn key(&self, case: LocalPartCase) -> String {
        key_of(&self.local, self.domain.as_str(), case)
    }
}

/// [`MailAddress::key`] of `local@domain` (`domain` in its stored ASCII form).
pub(crate) fn key_of(local: &str, domain: &str, case: LocalPartCase) -> String {
    let mut key = String::with_capacity(local.len() + 1 + domain.len());
    if local.is_ascii() {
        key.push_str(local);
        if case == LocalPartCase::Insensitive {
            key.make_ascii_lowercase();
        }
    } else {
        let local = nfc(local);
        match case {
            LocalPartCase::Sensitive => key.push_str(&local),
            LocalPartCase::Insensitive => key.push_str(&nfc(&local.to_lowercase())),
        }
    }
    key.push('@');
    key.push_str(domain);
    key
}

/// [`MailAddress::key`] of an address as stored (`local@ascii-domain`); `None` without an `@`.
pub(crate) fn stored_key(stored: &str, case: LocalPartCase) -> Option<String> {
    let (local, domain) = stored.rsplit_once('@')?;
    Some(key_of(local, domain, case))
}

/// Characters that show nothing or reorder what is shown: Unicode's Default_Ignorable_Code_Point
/// (zero-width space and joiners, soft hyphen, word joiner, variation selectors, tags, BOM) and
/// Bidi_Control (U+200E/F, U+202A–E, U+2066–9, U+061C). Two addresses differing by one look the
/// same, and a bidi override shows `moc.elpmaxe@…` reversed.
fn invisible(c: char) -> bool {
    !c.is_ascii()
        && (CodePointSetData::new::<DefaultIgnorableCodePoint>().contains(c)
            || CodePointSetData::new::<BidiControl>().contains(c))
}

fn check_local(local: &str) -> Result<(), String> {
    if local.is_empty() {
        return Err("must have a local part before the @".to_owned());
    }
    if local.len() > 64 {
        return Err("must have a local part of at most 64 bytes".to_owned());
    }
    if let Some(c) = local.chars().find(|&c| invisible(c)) {
        return Err(format!(
            "has an invisible or bidirectional control character (U+{:04X}) in its local part",
            u32::from(c)
        ));
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

#[cfg(test)]
mod identity_tests {
    use super::{DomainName, MailAddress, stored_key};
    use crate::domain::mail::LocalPartCase::{Insensitive, Sensitive};

    const NFD_JORG: &str = "jo\u{308}rg@example.com";
    const NFC_JORG: &str = "j\u{f6}rg@example.com";

    #[test]
    fn local_parts_are_kept_in_nfc() {
        let nfd = MailAddress::parse(NFD_JORG).unwrap();
        assert_eq!(nfd.stored(), NFC_JORG);
        assert_eq!(nfd, MailAddress::parse(NFC_JORG).unwrap());
        // NFC, not NFKC: a full-width or ligature letter keeps its meaning.
        assert_eq!(
            MailAddress::parse("\u{fb01}x@example.com").unwrap().local(),
            "\u{fb01}x"
        );
    }

    #[test]
    fn case_variants_share_a_key_unless_the_customer_is_case_sensitive() {
        let key = |raw: &str, case| MailAddress::parse(raw).unwrap().key(case);
        for variant in ["JANE@example.com", "Jane@EXAMPLE.com", "jane@example.com"] {
            assert_eq!(key(variant, Insensitive), "jane@example.com");
        }
        assert_eq!(key("Jane@example.com", Sensitive), "Jane@example.com");
        assert_eq!(key("J\u{d6}RG@example.com", Insensitive), NFC_JORG);
        assert_eq!(key("JO\u{308}RG@example.com", Insensitive), NFC_JORG);
        assert_eq!(key(NFD_JORG, Sensitive), NFC_JORG);
        // Lowercase, not case folding: ß stays ß, so straße@ and strasse@ stay two addresses.
        assert_eq!(key("STRAßE@example.com", Insensitive), "straße@example.com");
        assert_ne!(
            key("straße@example.com", Insensitive),
            key("strasse@example.com", Insensitive)
        );
        assert_eq!(
            key("ΟΔΥΣΣΕΥΣ@example.com", Insensitive),
            "οδυσσευς@example.com"
        );
        // Rows written before NFC was applied get the same key as the parsed spelling.
        assert_eq!(
            stored_key("JO\u{308}RG@example.com", Insensitive).unwrap(),
            NFC_JORG
        );
        assert_eq!(stored_key("no-at", Insensitive), None);
    }

    #[test]
    fn invisible_and_bidi_control_characters_are_refused_in_local_parts() {
        for c in [
            '\u{200b}',
            '\u{200c}',
            '\u{200d}',
            '\u{200e}',
            '\u{200f}',
            '\u{202a}',
            '\u{202e}',
            '\u{2066}',
            '\u{2069}',
            '\u{2060}',
            '\u{feff}',
            '\u{ad}',
            '\u{61c}',
            '\u{fe0f}',
            '\u{e0041}',
        ] {
            let err = MailAddress::parse(&format!("ja{c}ne@example.com")).unwrap_err();
            assert!(err.contains(&format!("U+{:04X}", u32::from(c))), "{err}");
            assert!(MailAddress::parse(&format!("\"ja{c}ne\"@example.com")).is_err());
        }
        assert!(MailAddress::parse("山田太郎@example.com").is_ok());
        assert!(MailAddress::parse("jörg@example.com").is_ok());
    }

    #[test]
    fn labels_mixing_scripts_are_refused_and_the_scripts_named() {
        let check = |raw: &str| DomainName::parse(raw).unwrap().check_scripts();
        let err = check("p\u{430}ypal.example").unwrap_err();
        assert!(err.contains("p\u{430}ypal"), "{err}");
        assert!(err.contains("Cyrillic") && err.contains("Latin"), "{err}");
        assert!(
            check("xn--pypal-4ve.example").is_err(),
            "the ASCII form too"
        );
        assert!(check("\u{3b1}bc.example").is_err(), "Greek with Latin");
        for fine in [
            "example.com",
            "bücher-2.example",
            "почта.рф",
            "株式.会社",
            "ひらがなカタカナ漢字abc.example",
            "한국어漢字.example",
            "ελλάδα.example",
        ] {
            assert_eq!(check(fine), Ok(()), "{fine}");
        }
    }
}
