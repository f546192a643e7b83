//! The tree's vocabulary: what kind a node is and who may be whose parent (its status is spelt in
//! [`super::status`]), and the arithmetic of materialised paths: a node's path is the ids from the
//! root down to it, each between slashes (`/<owner>/<reseller>/<customer>/`), and its subtree is
//! every path with its path as prefix.

use super::ids::NodeId;
use super::text_enum;

text_enum! {
    /// What a node is. The owner is the root and exists once; resellers may have children of
    /// either kind; customers are leaves.
    pub enum NodeKind {
        Owner = "owner",
        Reseller = "reseller",
        Customer = "customer",
    }
}

impl NodeKind {
    /// Whether a node of this kind may have a child of kind `child`.
    pub const fn may_parent(self, child: NodeKind) -> bool {
        matches!(
            (self, child),
            (
                Self::Owner | Self::Reseller,
                Self::Reseller | Self::Customer
            )
        )
    }
}

pub(crate) use super::status::NodeStatus;

/// Whether the node at `path` is the node at `root` or lies below it.
pub(crate) fn contains(root: &str, path: &str) -> bool {
    path.starts_with(root)
}

/// The path of `ancestor` (the node at `path` or one above it): a prefix of `path`.
pub(crate) fn path_of(path: &str, ancestor: NodeId) -> Option<&str> {
    let segment = format!("/{ancestor}/");
    path.find(&segment).map(|at| &path[..at + segment.len()])
}

/// The ids from the root down to the node at `path`, itself included.
pub(crate) fn lineage(path: &str) -> Vec<NodeId> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// The range of paths below and including `path` (`/a/b/` … `/a/b0`): '0' follows '/' in byte
/// order, and both backends compare paths bytewise (PostgreSQL through `COLLATE "C"`).
pub(crate) fn subtree_range(path: &str) -> (String, String) {
    let upper = format!("{}0", path.trim_end_matches('/'));
    (path.to_owned(), upper)
}

/// What still keeps a node from being deleted, each as a phrase ("2 child node(s)"); none when it
/// may go. `in_use` is what it holds by resource (left empty when its holdings go with it).
pub(crate) fn delete_blockers(
    children: i64,
    grants_to_children: bool,
    in_use: &std::collections::BTreeMap<String, i64>,
) -> Vec<String> {
    let mut still = Vec::new();
    if children > 0 {
        still.push(format!("{children} child node(s)"));
    }
    if grants_to_children {
        still.push("live allocations to its children".to_owned());
    }
    for (resource, used) in in_use {
        if *used > 0 {
            still.push(format!("{used} {resource} in use"));
        }
    }
    still
}

/// Whether a node of `kind` may be deleted with everything it holds (`?cascade=true`): only a
/// customer, whose holdings are domains and mailboxes.
pub(crate) fn may_cascade(kind: NodeKind) -> bool {
    kind == NodeKind::Customer
}

#[cfg(test)]
mod tests {
    use super::NodeKind::*;

    #[test]
    fn customers_are_leaves_and_the_owner_is_nobodys_child() {
        assert!(Owner.may_parent(Reseller));
        assert!(Owner.may_parent(Customer));
        assert!(Reseller.may_parent(Reseller));
        assert!(Reseller.may_parent(Customer));
        assert!(!Customer.may_parent(Customer));
        assert!(!Customer.may_parent(Reseller));
        assert!(!Reseller.may_parent(Owner));
        assert!(!Owner.may_parent(Owner));
    }

    #[test]
    fn kinds_round_trip_through_text() {
        for kind in [Owner, Reseller, Customer] {
            assert_eq!(kind.as_str().parse::<super::NodeKind>().unwrap(), kind);
        }
        assert!("Owner".parse::<super::NodeKind>().is_err());
    }

    #[test]
    fn a_path_names_its_lineage_and_bounds_its_subtree() {
        use crate::domain::ids::NodeId;
        let (a, b) = (NodeId::generate(), NodeId::generate());
        let root = format!("/{a}/");
        let child = format!("/{a}/{b}/");
        assert_eq!(super::lineage(&child), vec![a, b]);
        assert!(super::contains(&root, &child) && !super::contains(&child, &root));
        assert_eq!(super::path_of(&child, a), Some(root.as_str()));
        assert_eq!(super::path_of(&root, b), None);
        let (low, high) = super::subtree_range(&root);
        assert!(low.as_str() <= child.as_str() && child.as_str() < high.as_str());
    }
}

/// A node's name: trimmed, 1–100 characters of letters (any script), digits, spaces and
/// `. - _ & '`.
pub fn parse_name(raw: &str) -> Result<String, String> {
    let name = raw.trim();
    let length = name.chars().count();
    if !(1..=100).contains(&length) {
        return Err("must be 1 to 100 characters".to_owned());
    }
    match name
        .chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, ' ' | '.' | '-' | '_' | '&' | '\'')))
    {
        Some(bad) => Err(format!(
            "may hold letters, digits, spaces and . - _ & ' only, not {bad:?}"
        )),
        None => Ok(name.to_owned()),
    }
}

/// A contact phone number: 3–32 of digits, spaces and dashes, with an optional leading `+`.
pub fn parse_phone(raw: &str) -> Result<String, String> {
    let phone = raw.trim();
    let digits = phone.strip_prefix('+').unwrap_or(phone);
    let ok = (3..=32).contains(&phone.chars().count())
        && digits.chars().any(|c| c.is_ascii_digit())
        && digits
            .chars()
            .all(|c| c.is_ascii_digit() || c == ' ' || c == '-');
    if ok {
        Ok(phone.to_owned())
    } else {
        Err("must be 3 to 32 digits, spaces and dashes, with an optional leading +".to_owned())
    }
}

/// A contact e-mail address (syntax only; nobody is mailed).
pub fn parse_email(raw: &str) -> Result<String, String> {
    use validator::ValidateEmail;
    let email = raw.trim();
    if email.len() <= 254 && email.validate_email() {
        Ok(email.to_owned())
    } else {
        Err("must be a valid e-mail address".to_owned())
    }
}

/// Free text: at most 1,000 characters, no control characters but newlines and tabs.
pub fn parse_description(raw: &str) -> Result<String, String> {
    if raw.chars().count() > 1000 {
        return Err("must be at most 1000 characters".to_owned());
    }
    if raw
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err("must not contain control characters".to_owned());
    }
    Ok(raw.to_owned())
}

#[cfg(test)]
mod field_tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_may_use_any_script() {
        assert_eq!(
            parse_name("  Müller & Söhne GmbH. ").unwrap(),
            "Müller & Söhne GmbH."
        );
        assert!(parse_name("株式会社 山田").is_ok());
        assert!(parse_name("O'Brien-Smith_2").is_ok());
        assert!(parse_name("   ").is_err());
        assert!(parse_name(&"x".repeat(101)).is_err());
        assert!(parse_name("a/b").is_err());
        assert!(parse_name("tab\there").is_err());
    }

    #[test]
    fn phones_and_emails_are_checked() {
        assert!(parse_phone("+49 30 1234-567").is_ok());
        assert!(parse_phone("12").is_err());
        assert!(parse_phone("++49").is_err());
        assert!(parse_phone("+--").is_err());
        assert!(parse_phone("call me").is_err());
        assert!(parse_email("ops@example.com").is_ok());
        assert!(parse_email("not an address").is_err());
        assert!(parse_description("line\nbreak").is_ok());
        assert!(parse_description("bell\u{7}").is_err());
    }
}

#[cfg(test)]
mod delete_tests {
    use super::*;

    #[test]
    fn a_node_goes_only_when_nothing_holds_it() {
        let mut in_use = std::collections::BTreeMap::new();
        assert!(delete_blockers(0, false, &in_use).is_empty());
        in_use.insert("users".to_owned(), 0);
        assert!(delete_blockers(0, false, &in_use).is_empty());
        in_use.insert("domains".to_owned(), 2);
        assert_eq!(
            delete_blockers(3, true, &in_use),
            vec![
                "3 child node(s)".to_owned(),
                "live allocations to its children".to_owned(),
                "2 domains in use".to_owned(),
            ]
        );
        assert!(may_cascade(NodeKind::Customer));
        assert!(!may_cascade(NodeKind::Reseller));
    }
}
