//! Values that never show up in logs, `Debug` output or a printed configuration.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;

/// What a secret prints as.
const REDACTED: &str = "***";

/// A password or token: `Debug`, `Display` and `Serialize` print `***`.
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

    /// What is shown in place of the value: `""` when there is none, else `***`.
    fn shown(&self) -> &'static str {
        if self.0.is_empty() {
            ""
        } else {
            REDACTED
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.shown())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.shown())
    }
}

/// True for librdkafka property names whose values are credentials.
pub fn is_secret_property(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["password", "secret", "sasl.oauthbearer.config", "key.pem", "ssl.key"]
        .iter()
        .any(|s| n.contains(s))
}

/// librdkafka properties passed through to every client; credentials among them are
/// redacted wherever the configuration is shown.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Properties(BTreeMap<String, String>);

impl Properties {
    /// Every property, values as configured (for building a client).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// One property's value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// Sets a property.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.insert(name.into(), value.into());
    }

    /// The properties as shown: credential values replaced by `***`.
    fn shown(&self) -> BTreeMap<&str, &str> {
        self.iter()
            .map(|(k, v)| (k, if is_secret_property(k) { REDACTED } else { v }))
            .collect()
    }
}

impl fmt::Debug for Properties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.shown()).finish()
    }
}

impl Serialize for Properties {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.shown().serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_serialize_hide_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "\"***\"");
        assert_eq!(as_toml(&s), "\"***\"");
        assert_eq!(s.expose(), "hunter2");
        assert_eq!(format!("{:?}", Secret::default()), "\"\"");
    }

    /// The TOML value a serializable item becomes.
    fn as_toml<T: Serialize>(v: &T) -> String {
        toml::Value::try_from(v).unwrap().to_string()
    }

    #[test]
    fn credential_properties_are_recognised_and_redacted() {
        assert!(is_secret_property("sasl.password"));
        assert!(is_secret_property("ssl.key.password"));
        assert!(is_secret_property("sasl.oauthbearer.client.secret"));
        assert!(!is_secret_property("bootstrap.servers"));
        let mut p = Properties::default();
        p.insert("sasl.password", "hunter2");
        p.insert("sasl.mechanism", "PLAIN");
        let debug = format!("{p:?}");
        let shown = as_toml(&p);
        for text in [&debug, &shown] {
            assert!(!text.contains("hunter2") && text.contains("PLAIN"), "{text}");
        }
        assert_eq!(p.get("sasl.password"), Some("hunter2"));
    }
}
