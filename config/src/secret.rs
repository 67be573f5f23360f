//! A string that never shows up in logs or `Debug` output.

use serde::{Deserialize, Deserializer};
use std::fmt;

/// A password or token: `Debug` and `Display` print `***`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for handing to a client library; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when no secret was configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "***" })
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// True for librdkafka property names whose values are credentials.
pub fn is_secret_property(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["password", "secret", "sasl.oauthbearer.config", "key.pem", "ssl.key"]
        .iter()
        .any(|s| n.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn credential_properties_are_recognised() {
        assert!(is_secret_property("sasl.password"));
        assert!(is_secret_property("ssl.key.password"));
        assert!(is_secret_property("sasl.oauthbearer.client.secret"));
        assert!(!is_secret_property("bootstrap.servers"));
    }
}
