//! E-mail syntax through the `email_address` crate (RFC 5322 address spec),
//! stricter where CRMs are: a dotted domain, no display text, no domain literal.

use email_address::{EmailAddress, Options};

/// Why an address was refused (no value inside: it may be PHI).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid e-mail address")]
pub struct EmailError;

/// Trims the address and lower-cases its domain (the local part is case-sensitive
/// by the RFC; CRMs compare it case-insensitively, which duplicate checks follow).
pub fn normalise_email(raw: &str) -> Result<String, EmailError> {
    let trimmed = raw.trim();
    let options = Options {
        minimum_sub_domains: 2,
        allow_domain_literal: false,
        allow_display_text: false,
    };
    let parsed = EmailAddress::parse_with_options(trimmed, options).map_err(|_| EmailError)?;
    Ok(format!(
        "{}@{}",
        parsed.local_part(),
        parsed.domain().to_ascii_lowercase()
    ))
}
