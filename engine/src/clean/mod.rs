//! Cleaning and validation: the checks a record passes before it may move, as
//! outcomes with bounded reason codes.
//!
//! Every problem found is an [`Issue`]: a [`ReasonCode`] from a closed set, the
//! place (entity, column, target field) and a [`Severity`]. A blocking issue
//! quarantines the source record (ledger `Quarantined { reasons }`); a flag lets
//! it move with the field cleared or kept as the policy says, and is reported.
//! Details name columns, never values: no patient data reaches an issue.
//!
//! The checks themselves: e-mail syntax and duplicates ([`EmailPolicy`]),
//! phones to E.164 through the `phonenumber` crate (libphonenumber metadata)
//! with a configurable default region, required fields, dates in the future,
//! orphan references and over-long text (destination limits).

mod email;
mod phone;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

pub use email::{normalise_email, EmailError};
pub use phone::{to_e164, PhoneError};

/// The closed set of reasons a record or a field can be held back or flagged for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    /// Not an e-mail address (syntax).
    EmailInvalid,
    /// The same e-mail address as an earlier record of the same target object.
    EmailDuplicate,
    /// Not a dialable phone number in the default region or in international form.
    PhoneInvalid,
    /// The same phone as an earlier record, in a field the destination keeps unique.
    PhoneDuplicate,
    /// The phone had an extension, which E.164 cannot carry; the extension was left out.
    PhoneExtensionDropped,
    /// A field the map marks required is empty.
    RequiredMissing,
    /// A date that cannot be in the future (birth date) is.
    FutureDate,
    /// A reference to a record that does not exist at the source or was not migrated.
    OrphanReference,
    /// Text longer than the destination accepts.
    TooLong,
    /// A value the transform cannot use (not a date, not in the enum table, wrong type).
    BadValue,
    /// The source could not read the row against its declared types.
    Unreadable,
}

impl ReasonCode {
    pub const ALL: [ReasonCode; 11] = [
        ReasonCode::EmailInvalid,
        ReasonCode::EmailDuplicate,
        ReasonCode::PhoneInvalid,
        ReasonCode::PhoneDuplicate,
        ReasonCode::PhoneExtensionDropped,
        ReasonCode::RequiredMissing,
        ReasonCode::FutureDate,
        ReasonCode::OrphanReference,
        ReasonCode::TooLong,
        ReasonCode::BadValue,
        ReasonCode::Unreadable,
    ];

    /// The stable code written to the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::EmailInvalid => "email_invalid",
            ReasonCode::EmailDuplicate => "email_duplicate",
            ReasonCode::PhoneInvalid => "phone_invalid",
            ReasonCode::PhoneDuplicate => "phone_duplicate",
            ReasonCode::PhoneExtensionDropped => "phone_extension_dropped",
            ReasonCode::RequiredMissing => "required_missing",
            ReasonCode::FutureDate => "future_date",
            ReasonCode::OrphanReference => "orphan_reference",
            ReasonCode::TooLong => "too_long",
            ReasonCode::BadValue => "bad_value",
            ReasonCode::Unreadable => "unreadable",
        }
    }

    fn explain(self) -> &'static str {
        match self {
            ReasonCode::EmailInvalid => "is not a valid e-mail address",
            ReasonCode::EmailDuplicate => "repeats the e-mail address of an earlier record",
            ReasonCode::PhoneInvalid => "is not a valid phone number",
            ReasonCode::PhoneDuplicate => "repeats the phone of an earlier record",
            ReasonCode::PhoneExtensionDropped => "had an extension that E.164 cannot carry",
            ReasonCode::RequiredMissing => "is required but empty",
            ReasonCode::FutureDate => "is a date in the future",
            ReasonCode::OrphanReference => "refers to a record that was not found or not migrated",
            ReasonCode::TooLong => "is longer than the destination accepts",
            ReasonCode::BadValue => "has a value the map cannot convert",
            ReasonCode::Unreadable => "could not be read against its declared type",
        }
    }
}

/// Whether an issue holds the record back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The record is quarantined; it can be retried after a fix.
    Block,
    /// The record moves; the issue is reported with it.
    Flag,
}

/// One problem with one record, named by place, never by value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issue {
    pub code: ReasonCode,
    pub severity: Severity,
    /// `Patient.MobilePhone → phone`: source entity and column(s), and the target field.
    pub place: String,
    /// Extra context without values (`limit 65536 characters`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

impl Issue {
    pub fn new(code: ReasonCode, severity: Severity, place: impl Into<String>) -> Issue {
        Issue {
            code,
            severity,
            place: place.into(),
            note: String::new(),
        }
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Issue {
        self.note = note.into();
        self
    }

    /// The ledger's reason: the bounded code and a detail naming the place.
    pub fn to_reason(&self) -> cutover_ledger::Reason {
        let mut detail = format!("{} {}", self.place, self.code.explain());
        if !self.note.is_empty() {
            detail.push_str(&format!(" ({})", self.note));
        }
        cutover_ledger::Reason {
            code: self.code.as_str().to_string(),
            detail,
        }
    }
}

/// What to do with the second and later records carrying an e-mail (or, in a
/// field marked `unique`, a phone) already seen for the same target object
/// (families share addresses and home phones; HighLevel refuses duplicates).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmailPolicy {
    /// The first record keeps the address; later ones move without it and are flagged.
    #[default]
    KeepFirst,
    /// Every record keeps the address; later ones are flagged.
    KeepAll,
    /// Later records are quarantined until someone decides.
    Quarantine,
}

/// What to do with a field whose value fails its check (bad phone, bad e-mail).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvalidPolicy {
    /// Hold the record back until the value is fixed at the source.
    #[default]
    Quarantine,
    /// Move the record without the field, flagged.
    DropField,
}

/// Cleaning settings (the `[cleaning]` table of `cutover.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CleanConfig {
    /// ISO 3166 region for phones written without a country code (`US`).
    pub default_region: String,
    pub duplicate_email: EmailPolicy,
    pub invalid_email: InvalidPolicy,
    pub invalid_phone: InvalidPolicy,
}

impl Default for CleanConfig {
    fn default() -> Self {
        CleanConfig {
            default_region: "US".into(),
            duplicate_email: EmailPolicy::KeepFirst,
            invalid_email: InvalidPolicy::Quarantine,
            invalid_phone: InvalidPolicy::Quarantine,
        }
    }
}

/// A bad configuration value, named.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("cleaning configuration: {0}")]
pub struct CleanConfigError(pub String);

/// The stateful part of cleaning: the configuration and the e-mails seen so far
/// (per target object), so duplicates are found in one streaming pass.
#[derive(Debug)]
pub struct Cleaner {
    config: CleanConfig,
    region: phonenumber::country::Id,
    seen_emails: HashMap<String, std::collections::HashSet<String>>,
}

/// What a check decided for one value.
#[derive(Debug, Clone, PartialEq)]
pub enum Checked {
    /// Use this value (possibly normalised), with any flags.
    Keep(String, Vec<Issue>),
    /// Leave the field out; the issue says why.
    Drop(Issue),
    /// Hold the record back.
    Block(Issue),
}

impl Cleaner {
    pub fn new(config: CleanConfig) -> Result<Cleaner, CleanConfigError> {
        let region = config
            .default_region
            .to_ascii_uppercase()
            .parse::<phonenumber::country::Id>()
            .map_err(|_| {
                CleanConfigError(format!(
                    "default_region {:?} is not an ISO 3166 region code known to libphonenumber",
                    config.default_region
                ))
            })?;
        Ok(Cleaner {
            config,
            region,
            seen_emails: HashMap::new(),
        })
    }

    pub fn config(&self) -> &CleanConfig {
        &self.config
    }

    fn invalid(&self, policy: InvalidPolicy, code: ReasonCode, place: &str) -> Checked {
        match policy {
            InvalidPolicy::Quarantine => Checked::Block(Issue::new(code, Severity::Block, place)),
            InvalidPolicy::DropField => Checked::Drop(Issue::new(code, Severity::Flag, place)),
        }
    }

    /// A phone in E.164 (`+15125550134`), or what the policy says for a bad one.
    pub fn phone(&self, raw: &str, place: &str) -> Checked {
        match to_e164(raw, self.region) {
            Ok(normalised) => {
                let flags = if normalised.extension_dropped {
                    vec![Issue::new(
                        ReasonCode::PhoneExtensionDropped,
                        Severity::Flag,
                        place,
                    )]
                } else {
                    Vec::new()
                };
                Checked::Keep(normalised.e164, flags)
            }
            Err(_) => self.invalid(self.config.invalid_phone, ReasonCode::PhoneInvalid, place),
        }
    }

    /// A normalised e-mail (trimmed, domain lower-cased), checked for syntax and,
    /// per `scope` (the target object), for duplicates under the policy.
    pub fn email(&mut self, raw: &str, scope: &str, place: &str) -> Checked {
        let email = match normalise_email(raw) {
            Ok(email) => email,
            Err(_) => {
                return self.invalid(self.config.invalid_email, ReasonCode::EmailInvalid, place)
            }
        };
        let identity = email.to_lowercase();
        self.unique(email, identity, scope, ReasonCode::EmailDuplicate, place)
    }

    /// A phone in E.164 that must also be unique within `scope` (HighLevel's
    /// duplicate-contact rule matches on phone as well as e-mail).
    pub fn unique_phone(&mut self, raw: &str, scope: &str, place: &str) -> Checked {
        match self.phone(raw, place) {
            Checked::Keep(e164, mut flags) => match self.unique(
                e164.clone(),
                e164,
                &format!("{scope}#phone"),
                ReasonCode::PhoneDuplicate,
                place,
            ) {
                Checked::Keep(v, more) => {
                    flags.extend(more);
                    Checked::Keep(v, flags)
                }
                other => other,
            },
            other => other,
        }
    }

    fn unique(
        &mut self,
        value: String,
        identity: String,
        scope: &str,
        code: ReasonCode,
        place: &str,
    ) -> Checked {
        let seen = self.seen_emails.entry(scope.to_string()).or_default();
        if seen.insert(identity) {
            return Checked::Keep(value, Vec::new());
        }
        match self.config.duplicate_email {
            EmailPolicy::KeepFirst => Checked::Drop(Issue::new(code, Severity::Flag, place)),
            EmailPolicy::KeepAll => {
                Checked::Keep(value, vec![Issue::new(code, Severity::Flag, place)])
            }
            EmailPolicy::Quarantine => Checked::Block(Issue::new(code, Severity::Block, place)),
        }
    }

    /// Forgets the e-mails seen (a new pass over the source).
    pub fn reset(&mut self) {
        self.seen_emails.clear();
    }
}

/// Checks text against a destination length limit (characters).
pub fn check_length(text: &str, limit: usize, place: &str) -> Option<Issue> {
    let length = text.chars().count();
    (length > limit).then(|| {
        Issue::new(ReasonCode::TooLong, Severity::Block, place)
            .with_note(format!("{length} characters, limit {limit}"))
    })
}

/// The issue for a row the source could not read.
pub fn unreadable(place: &str) -> Issue {
    Issue::new(ReasonCode::Unreadable, Severity::Block, place)
}

/// The ledger reasons of the blocking issues (what `Quarantined { reasons }` carries).
pub fn quarantine_reasons(issues: &[Issue]) -> Vec<cutover_ledger::Reason> {
    issues
        .iter()
        .filter(|i| i.severity == Severity::Block)
        .map(Issue::to_reason)
        .collect()
}
