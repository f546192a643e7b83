//! The check: what mail workers ask before accepting a domain or a mailbox.
//!
//! Answers come from memory: [`index`] holds every domain, mailbox, alias, node and credential
//! that a check needs, built at start and kept in step with the database through the change feed
//! ([`feed`]) that triggers in the database fill on every committed write, whichever process made
//! it. Only an enrolment (a first sighting of an address) writes to the database on this path.

pub mod postfix;
pub mod socketmap;
pub mod verdict;

pub use verdict::{Answer, Question, Reason, Scope, Target, Verdict};

/// Something that answers checks: the real [`Checker`] or, in the listeners' own tests, a fake.
/// The Postfix listeners are written against this, so their protocol handling is tested apart from
/// the database.
pub trait Ask: Send + Sync + 'static {
    /// Answers one question for a caller who may ask about the whole tree.
    fn ask(&self, question: Question) -> impl std::future::Future<Output = Answer> + Send;
}
