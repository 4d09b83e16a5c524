//! Phones to E.164 through the `phonenumber` crate (Google libphonenumber
//! metadata): parsed in the default region unless written internationally,
//! then checked against the region's number plan.

use phonenumber::{country, Mode};

/// Why a phone was refused (no value inside: it may be PHI).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("the phone contains letters")]
    Letters,
    #[error("the phone cannot be parsed")]
    Unparseable,
    #[error("the phone is not a valid number in its region's plan")]
    Invalid,
}

/// A phone in E.164 form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct E164 {
    pub e164: String,
    /// The input had an extension (`ext. 12`, `x12`), which E.164 leaves out.
    pub extension_dropped: bool,
}

/// Normalises `raw` to E.164 (`+15125550134`).
///
/// Letters are refused before parsing: libphonenumber reads `555-CALL` as a
/// vanity number, but in a patient file letters mean a note (`call cell`), not digits.
pub fn to_e164(raw: &str, default_region: country::Id) -> Result<E164, PhoneError> {
    let (number_part, extension) = split_extension(raw);
    if number_part.chars().any(char::is_alphabetic) {
        return Err(PhoneError::Letters);
    }
    let parsed = phonenumber::parse(Some(default_region), number_part)
        .map_err(|_| PhoneError::Unparseable)?;
    if !phonenumber::is_valid(&parsed) {
        return Err(PhoneError::Invalid);
    }
    Ok(E164 {
        e164: parsed.format().mode(Mode::E164).to_string(),
        extension_dropped: extension,
    })
}

/// Splits off a trailing extension marked `ext`, `ext.`, `extension`, `x` or `#`.
fn split_extension(raw: &str) -> (&str, bool) {
    let lower = raw.to_ascii_lowercase();
    for marker in ["extension", "ext.", "ext", "x", "#"] {
        if let Some(at) = lower.rfind(marker) {
            let rest = lower[at + marker.len()..].trim();
            if !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit()) && at > 0 {
                return (raw[..at].trim_end(), true);
            }
        }
    }
    (raw, false)
}
