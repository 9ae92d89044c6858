//! The closed error vocabulary shared by every provider and front end.
//!
//! Every failure in avm is an [`Error`] carrying one [`ErrorKind`]. Front ends map the kind in
//! exactly one place each (errno for FUSE, exit code for the CLI, status for HTTP, JSON-RPC for
//! MCP). Messages are lowercase, name the path or value at fault and say what would be accepted.

use std::fmt;

/// The closed set of error kinds. Adding a variant is a breaking change for every front end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// The path (or version, or link) does not exist.
    NotFound,
    /// A file was used where a directory was expected.
    NotADirectory,
    /// A directory was used where a file was expected.
    IsADirectory,
    /// The target exists and the operation refuses to overwrite it.
    AlreadyExists,
    /// A directory that must be empty is not (rmdir).
    NotEmpty,
    /// The caller may not do this; the message names the rule that refused.
    PermissionDenied,
    /// The path is served by a provider that does not accept writes.
    ReadOnly,
    /// The request itself is malformed (bad path, bad query, bad JSON, ...).
    InvalidInput,
    /// The provider does not offer this operation or suffix.
    Unsupported,
    /// The input or output exceeds a configured limit.
    TooLarge,
    /// A resource stayed locked past the configured timeout.
    Busy,
    /// The storage behind the store is full (the disk, or the database's own limit).
    StorageFull,
    /// The operation ran past its deadline.
    TimedOut,
    /// A backing resource (database file, remote service) cannot be used.
    Unavailable,
    /// A bug or an unexpected failure inside avm.
    Internal,
}

impl ErrorKind {
    /// Every kind, in declaration order (used by tests that check front-end mappings are total).
    pub const ALL: [ErrorKind; 15] = [
        ErrorKind::NotFound,
        ErrorKind::NotADirectory,
        ErrorKind::IsADirectory,
        ErrorKind::AlreadyExists,
        ErrorKind::NotEmpty,
        ErrorKind::PermissionDenied,
        ErrorKind::ReadOnly,
        ErrorKind::InvalidInput,
        ErrorKind::Unsupported,
        ErrorKind::TooLarge,
        ErrorKind::Busy,
        ErrorKind::StorageFull,
        ErrorKind::TimedOut,
        ErrorKind::Unavailable,
        ErrorKind::Internal,
    ];

    /// The stable kebab-case name used in JSON errors (`{"error":{"kind":"not-found",...}}`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not-found",
            ErrorKind::NotADirectory => "not-a-directory",
            ErrorKind::IsADirectory => "is-a-directory",
            ErrorKind::AlreadyExists => "already-exists",
            ErrorKind::NotEmpty => "not-empty",
            ErrorKind::PermissionDenied => "permission-denied",
            ErrorKind::ReadOnly => "read-only",
            ErrorKind::InvalidInput => "invalid-input",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::TooLarge => "too-large",
            ErrorKind::Busy => "busy",
            ErrorKind::StorageFull => "storage-full",
            ErrorKind::TimedOut => "timed-out",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An avm error: a kind plus a human message that names the culprit and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    /// Builds an error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
    }

    /// The error's kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The error's message (without the kind).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Returns the same error with `context: ` put in front of the message.
    pub fn context(self, context: impl fmt::Display) -> Self {
        Error {
            kind: self.kind,
            message: format!("{context}: {}", self.message),
        }
    }

    /// `NotFound` for `path`.
    pub fn not_found(path: &str) -> Self {
        Error::new(ErrorKind::NotFound, format!("no such node: {path}"))
    }

    /// `InvalidInput` with `message`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidInput, message)
    }

    /// `Internal` with `message`.
    pub fn internal(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Internal, message)
    }

    /// `Unsupported` for `what` on `path`.
    pub fn unsupported(what: &str, path: &str) -> Self {
        Error::new(
            ErrorKind::Unsupported,
            format!("{what} is not supported on {path}"),
        )
    }

    /// `PermissionDenied` with `message`.
    pub fn denied(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::PermissionDenied, message)
    }
}

/// Result alias used across avm.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_distinct_name() {
        let mut names: Vec<_> = ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorKind::ALL.len());
    }

    #[test]
    fn context_keeps_the_kind_and_prefixes_the_message() {
        let e = Error::not_found("/a.md").context("mv");
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(e.to_string(), "mv: no such node: /a.md");
    }
}
