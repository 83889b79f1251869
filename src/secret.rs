//! `Secret`: the one type for every secret the server holds (model keys, the
//! speech service's key, the webhook signing secret, API keys). It has no
//! `Serialize` and its `Debug` prints `***`, so a secret cannot reach a log
//! line, a job record, an event or a response by accident; the few places
//! that must send it call `expose`.

use std::fmt;

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    /// None for an empty or blank value: an unset variable and an empty one
    /// mean the same.
    pub fn new(value: impl Into<String>) -> Option<Secret> {
        let value = value.into().trim().to_owned();
        (!value.is_empty()).then_some(Secret(value))
    }

    /// The secret itself, for the one header or signature that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print_and_blank_is_none() {
        let s = Secret::new(" sk-abc ").unwrap();
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(s.expose(), "sk-abc");
        assert!(Secret::new("  ").is_none());
    }
}
