//! What every CSV download shares: cells a spreadsheet will not run as formulas, and the
//! attachment header that names the file. The audit export and the statistics use these.

use std::borrow::Cow;

use actix_web::http::header::{self, HeaderName};

/// The media type of a CSV download.
pub(crate) const CSV: &str = "text/csv; charset=utf-8";

/// A text cell a spreadsheet will not run as a formula: one starting with `=`, `+`, `-`, `@`, a
/// tab or a carriage return gets a leading `'` (OWASP's advice on CSV injection). Figures are
/// written as numbers, never through this.
pub(crate) fn safe_cell(text: &str) -> Cow<'_, str> {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}").into()
    } else {
        text.into()
    }
}

/// The `Content-Disposition` of a download saved as `file`.
pub(crate) fn attachment(file: &str) -> (HeaderName, String) {
    (
        header::CONTENT_DISPOSITION,
        format!("attachment; filename=\"{file}\""),
    )
}

/// A name as a file-name part: lowercase ASCII letters and digits, runs of anything else as one
/// `-`, none at either end; `node` when nothing is left (a name in another script).
pub(crate) fn slug(name: &str) -> String {
    let mut slug = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug = slug.trim_end_matches('-');
    if slug.is_empty() {
        "node".to_owned()
    } else {
        slug.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_guarded_and_plain_text_is_not() {
        for (raw, shown) in [
            ("=SUM(A1:A9)", "'=SUM(A1:A9)"),
            ("+49 30 1234", "'+49 30 1234"),
            ("-1", "'-1"),
            ("@cmd", "'@cmd"),
            ("\tx", "'\tx"),
            ("\rx", "'\rx"),
            ("Acme, Inc.", "Acme, Inc."),
            ("a=b", "a=b"),
            ("", ""),
        ] {
            assert_eq!(safe_cell(raw), shown, "{raw:?}");
        }
    }

    #[test]
    fn slugs_keep_ascii_letters_and_digits() {
        assert_eq!(slug("Acme Reseller"), "acme-reseller");
        assert_eq!(slug("  Müller & Söhne GmbH. "), "m-ller-s-hne-gmbh");
        assert_eq!(slug("株式会社 山田"), "node");
        assert_eq!(slug("-O'Brien_2-"), "o-brien-2");
    }
}
