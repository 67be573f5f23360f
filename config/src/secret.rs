//! Values that never show up in logs, `Debug` output, error messages or a printed
//! configuration. A secret is a string whatever it looks like: `918273645` or `true` given
//! as a password stays that text, from the file, the environment or `--set`.

use secrecy::{ExposeSecret, SecretString};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;

/// What a secret prints as.
const REDACTED: &str = "***";

/// A password, passphrase or token, held in memory that is zeroed when dropped (`secrecy`).
/// `Debug`, `Display`-like logging and `Serialize` print `***`; a scalar of any type in the
/// configuration file is taken as its text.
#[derive(Clone, Default)]
pub struct Secret(SecretString);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(SecretString::from(value.into()))
    }

    /// The secret itself, for handing to a client library; never log it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// True when no secret was configured.
    pub fn is_empty(&self) -> bool {
        self.expose().is_empty()
    }

    /// What is shown in place of the value: `""` when there is none, else `***`.
    fn shown(&self) -> &'static str {
        if self.is_empty() {
            ""
        } else {
            REDACTED
        }
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.shown())
    }
}

/// Reads any scalar as its text, and never quotes the value in an error.
struct ScalarText;

impl Visitor<'_> for ScalarText {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string (or a number or boolean, taken as its text)")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarText).map(Secret::new)
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

/// True for the configuration fields that hold credentials (`clickhouse.password`,
/// `registry.password`, `serve.token`, librdkafka credential properties): values given for them in the
/// environment or with `--set` are kept as text, never read as numbers or booleans.
pub fn is_secret_field(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    is_secret_property(&n) || n.ends_with("passphrase") || n == "token" || n.ends_with("_token")
}

/// One librdkafka property value: credentials are [`Secret`]s from load to use.
#[derive(Clone, PartialEq, Eq)]
enum PropertyValue {
    Plain(String),
    Secret(Secret),
}

impl PropertyValue {
    fn of(name: &str, value: String) -> Self {
        if is_secret_property(name) {
            Self::Secret(Secret::new(value))
        } else {
            Self::Plain(value)
        }
    }

    fn expose(&self) -> &str {
        match self {
            Self::Plain(v) => v,
            Self::Secret(s) => s.expose(),
        }
    }

    fn shown(&self) -> &str {
        match self {
            Self::Plain(v) => v,
            Self::Secret(s) => s.shown(),
        }
    }
}

/// librdkafka properties passed through to every client; the values of credentials among
/// them are [`Secret`]s, redacted wherever the configuration is shown.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Properties(BTreeMap<String, PropertyValue>);

impl Properties {
    /// Every property, values as configured (for building a client).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.expose()))
    }

    /// One property's value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(PropertyValue::expose)
    }

    /// Sets a property.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        let value = PropertyValue::of(&name, value.into());
        self.0.insert(name, value);
    }

    /// The properties as shown: credential values replaced by `***`.
    fn shown(&self) -> BTreeMap<&str, &str> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.shown())).collect()
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

impl<'de> Deserialize<'de> for Properties {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// A property value: any scalar, as its text.
        struct Text(String);
        impl<'de> Deserialize<'de> for Text {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any(ScalarText).map(Text)
            }
        }
        let raw = BTreeMap::<String, Text>::deserialize(d)?;
        let mut out = Properties::default();
        for (name, Text(value)) in raw {
            out.insert(name, value);
        }
        Ok(out)
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
    fn any_scalar_is_a_secret_as_its_text() {
        #[derive(Deserialize)]
        struct T {
            a: Secret,
            b: Secret,
            c: Secret,
        }
        let t: T = toml::from_str("a = 918273645\nb = true\nc = \"x\"\n").unwrap();
        assert_eq!((t.a.expose(), t.b.expose(), t.c.expose()), ("918273645", "true", "x"));
        // a table is refused without showing what was in it (deserialized from a value, as
        // the configuration is: the parser's own errors quote the line)
        let table: toml::Table = "a = { p = \"hunter2\" }\nb = 1\nc = 1\n".parse().unwrap();
        let e = T::deserialize(toml::Value::Table(table)).err().unwrap().to_string();
        assert!(!e.contains("hunter2") && e.contains("a string"), "{e}");
    }

    #[test]
    fn credential_properties_are_recognised_and_redacted() {
        assert!(is_secret_property("sasl.password"));
        assert!(is_secret_property("ssl.key.password"));
        assert!(is_secret_property("sasl.oauthbearer.client.secret"));
        assert!(!is_secret_property("bootstrap.servers"));
        assert!(is_secret_field("password") && is_secret_field("ssl.key.passphrase"));
        let mut p = Properties::default();
        p.insert("sasl.password", "hunter2");
        p.insert("sasl.mechanism", "PLAIN");
        let debug = format!("{p:?}");
        let shown = as_toml(&p);
        for text in [&debug, &shown] {
            assert!(!text.contains("hunter2") && text.contains("PLAIN"), "{text}");
        }
        assert_eq!(p.get("sasl.password"), Some("hunter2"));
        let back: Properties = toml::from_str("\"linger.ms\" = 5\n\"sasl.password\" = 1234\n").unwrap();
        assert_eq!(
            (back.get("linger.ms"), back.get("sasl.password")),
            (Some("5"), Some("1234"))
        );
    }
}
