//! Bearer secrets (API keys, tokens) that never format: `Debug` and `Display`
//! print a marker, only [`Secret::expose`] gives the value (for the
//! `Authorization` header), and [`Secret::redact`] scrubs it from text a server
//! may have echoed back. Each destination names its own kind, so a Twenty key
//! cannot be handed to the HighLevel client by mistake.

use std::fmt;
use std::marker::PhantomData;

/// What a secret is called in `Debug` output (`Token([redacted])`).
pub trait SecretKind {
    const NAME: &'static str;
}

/// What takes a secret's place in text.
pub const REDACTED: &str = "[redacted]";

/// A secret of kind `K`.
pub struct Secret<K> {
    value: String,
    kind: PhantomData<fn() -> K>,
}

impl<K> Secret<K> {
    pub fn new(secret: impl Into<String>) -> Self {
        Secret {
            value: secret.into(),
            kind: PhantomData,
        }
    }

    /// The secret itself, for the `Authorization` header and nothing else.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// Replaces every occurrence of the secret in `text` (server echoes, URLs) with
    /// [`REDACTED`]. Secrets under 4 characters are left alone: replacing them would
    /// mangle ordinary words without protecting anything.
    pub fn redact(&self, text: &str) -> String {
        if self.value.len() < 4 {
            return text.to_string();
        }
        text.replace(&self.value, REDACTED)
    }
}

impl<K> Clone for Secret<K> {
    fn clone(&self) -> Self {
        Secret::new(self.value.clone())
    }
}

impl<K> PartialEq for Secret<K> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl<K> Eq for Secret<K> {}

impl<K: SecretKind> fmt::Debug for Secret<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({REDACTED})", K::NAME)
    }
}

impl<K> fmt::Display for Secret<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    enum TestKey {}
    impl SecretKind for TestKey {
        const NAME: &'static str = "TestKey";
    }

    #[test]
    fn never_formats_the_value() {
        let secret = Secret::<TestKey>::new("s3cret-value-42");
        assert_eq!(format!("{secret:?}"), "TestKey([redacted])");
        assert_eq!(format!("{secret}"), "[redacted]");
        assert_eq!(secret.expose(), "s3cret-value-42");
    }

    #[test]
    fn redacts_every_occurrence() {
        let secret = Secret::<TestKey>::new("s3cret-value-42");
        assert_eq!(
            secret.redact("Bearer s3cret-value-42 rejected; token=s3cret-value-42"),
            "Bearer [redacted] rejected; token=[redacted]"
        );
    }

    #[test]
    fn very_short_secrets_do_not_mangle_text() {
        let secret = Secret::<TestKey>::new("abc");
        assert_eq!(secret.redact("abcdef"), "abcdef");
    }

    #[test]
    fn equality_compares_values() {
        assert_eq!(
            Secret::<TestKey>::new("a1b2"),
            Secret::<TestKey>::new("a1b2")
        );
        assert_ne!(
            Secret::<TestKey>::new("a1b2"),
            Secret::<TestKey>::new("a1b3")
        );
    }
}
