//! Errors of chain access. The split that matters to a relay: `Unavailable`
//! means "we could not find out" (retry later, never treat as a no), every
//! other variant is a definite answer.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChainError {
    /// No endpoint gave a usable answer: network errors, timeouts, 5xx,
    /// oversized or malformed bodies, or no endpoint configured.
    Unavailable(String),
    /// Our input is invalid (rejected locally before asking, or the chain said 400 about it).
    InvalidInput(String),
    /// Definite: the chain has no such thing (address not registered, no key published).
    NotFound(String),
    /// Definite: the address's domain has expired, so the chain refuses to resolve it.
    DomainExpired(String),
}

impl ChainError {
    /// True when the answer is "don't know" rather than a definite no.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, ChainError::Unavailable(_))
    }

    /// Stable machine-readable code, for node answers and CLI output.
    pub fn code(&self) -> &'static str {
        match self {
            ChainError::Unavailable(_) => "chain_unavailable",
            ChainError::InvalidInput(_) => "chain_invalid_input",
            ChainError::NotFound(_) => "chain_not_found",
            ChainError::DomainExpired(_) => "domain_expired",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            ChainError::Unavailable(m)
            | ChainError::InvalidInput(m)
            | ChainError::NotFound(m)
            | ChainError::DomainExpired(m) => m,
        }
    }
}

impl fmt::Display for ChainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code(), self.message())
    }
}

impl std::error::Error for ChainError {}
