//! Where configuration values come from, merged into one TOML table.

use crate::secret::is_secret_field;
use serde::de::DeserializeOwned;
use std::path::Path;
use thiserror::Error;
use toml::{Table, Value};

/// Why the configuration could not be loaded; the message names the file or field.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("configuration file {path} is not valid TOML: {message}")]
    Syntax {
        /// The file.
        path: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A field has a wrong type, is unknown, or has an invalid value.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

const ENV_PREFIX: &str = "CHAINFLOW_";

/// Reads `file`, then applies `CHAINFLOW_SECTION__FIELD` variables, then `a.b=value` overrides.
pub(crate) fn merge(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: &[String],
) -> Result<Table, ConfigError> {
    let mut table = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.display().to_string(),
                source,
            })?;
            text.parse::<Table>().map_err(|e| ConfigError::Syntax {
                path: path.display().to_string(),
                message: syntax_message(&text, &e),
            })?
        }
        None => Table::new(),
    };
    // Without [products] tables in the file, overlays change the default products.
    if !table.contains_key("products") {
        let defaults = Value::try_from(crate::default_products()).expect("default products serialize");
        table.insert("products".into(), defaults);
    }
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k.contains("__"))
        .collect();
    vars.sort();
    for (name, value) in vars {
        let path = env_path(&name[ENV_PREFIX.len()..]);
        set(&mut table, &path, &value, &name)?;
    }
    for item in overrides {
        let (key, value) = item.split_once('=').ok_or_else(|| {
            ConfigError::Invalid(format!(
                "--set {item}: expected key=value, for example kafka.partitions=12"
            ))
        })?;
        let path: Vec<String> = key.trim().split('.').map(str::to_string).collect();
        set(&mut table, &path, value, &format!("--set {key}"))?;
    }
    Ok(table)
}

/// Where and what the TOML error is, without the parser's quote of the line (which may
/// hold a secret).
fn syntax_message(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {}", e.message())
        }
        None => e.message().to_string(),
    }
}

/// Deserializes the merged table, reporting the dotted path of a bad field.
pub(crate) fn deserialize<T: DeserializeOwned>(table: Table) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(Value::Table(table)).map_err(|e| {
        let path = e.path().to_string();
        ConfigError::Invalid(format!("{path}: {}", e.into_inner()))
    })
}

/// `KAFKA__PROPERTIES__SASL_PASSWORD` → `kafka.properties.sasl.password`;
/// `PRODUCTS__NIFTY__RATE` → `products.NIFTY.rate` (product names keep their case).
fn env_path(rest: &str) -> Vec<String> {
    let parts: Vec<&str> = rest.split("__").collect();
    parts
        .iter()
        .enumerate()
        .map(|(i, p)| match (parts[0], i) {
            ("PRODUCTS", 1) => p.to_string(),
            ("KAFKA", 2) if parts[1] == "PROPERTIES" => p.to_ascii_lowercase().replace('_', "."),
            _ => p.to_ascii_lowercase(),
        })
        .collect()
}

/// Sets `path` in `table` to `raw`, read as a TOML value when it is one (numbers, booleans)
/// and as a string otherwise; librdkafka properties and secrets always stay strings.
fn set(table: &mut Table, path: &[String], raw: &str, origin: &str) -> Result<(), ConfigError> {
    let Some((last, parents)) = path.split_last() else {
        return Err(ConfigError::Invalid(format!("{origin}: empty key")));
    };
    if path.iter().any(String::is_empty) {
        return Err(ConfigError::Invalid(format!(
            "{origin}: malformed key {:?}",
            path.join(".")
        )));
    }
    let is_property = parents.len() == 2 && parents[0] == "kafka" && parents[1] == "properties";
    let value = if is_property || is_secret_field(last) {
        Value::String(raw.into())
    } else {
        scalar(raw)
    };
    let mut node = table;
    for (i, key) in parents.iter().enumerate() {
        let entry = node.entry(key.clone()).or_insert_with(|| Value::Table(Table::new()));
        node = entry
            .as_table_mut()
            .ok_or_else(|| ConfigError::Invalid(format!("{origin}: {} is not a table", parents[..=i].join("."))))?;
    }
    node.insert(last.clone(), value);
    Ok(())
}

/// A text field that may be given as a number or a boolean (`CHAINFLOW_ENRICH__INSTANCE_ID=0`
/// arrives as the integer 0): taken as the text it was written as.
pub(crate) fn text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Written {
        Text(String),
        Integer(i64),
        Float(f64),
        Bool(bool),
    }
    Ok(match <Written as serde::Deserialize>::deserialize(d)? {
        Written::Text(s) => s,
        Written::Integer(i) => i.to_string(),
        Written::Float(f) => f.to_string(),
        Written::Bool(b) => b.to_string(),
    })
}

fn scalar(raw: &str) -> Value {
    format!("v = {raw}")
        .parse::<Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .filter(|v| v.is_integer() || v.is_float() || v.is_bool())
        .unwrap_or_else(|| Value::String(raw.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_map_to_paths() {
        assert_eq!(env_path("KAFKA__BOOTSTRAP_SERVERS"), ["kafka", "bootstrap_servers"]);
        assert_eq!(
            env_path("KAFKA__PROPERTIES__SSL_CA_LOCATION"),
            ["kafka", "properties", "ssl.ca.location"]
        );
        assert_eq!(
            env_path("PRODUCTS__BANKNIFTY__LOT_SIZE"),
            ["products", "BANKNIFTY", "lot_size"]
        );
    }

    #[test]
    fn secrets_stay_text() {
        let mut t = Table::new();
        set(&mut t, &["clickhouse".into(), "password".into()], "918273645", "env").unwrap();
        set(&mut t, &["registry".into(), "password".into()], "true", "env").unwrap();
        assert_eq!(t["clickhouse"]["password"], Value::String("918273645".into()));
        assert_eq!(t["registry"]["password"], Value::String("true".into()));
    }

    #[test]
    fn a_syntax_error_says_where_without_quoting_the_line() {
        let text = "[clickhouse]\npassword = hunter2\n";
        let e = text.parse::<Table>().unwrap_err();
        let m = syntax_message(text, &e);
        assert!(m.starts_with("line 2, column 12:") && !m.contains("hunter2"), "{m}");
    }

    #[test]
    fn scalars_keep_their_type() {
        assert_eq!(scalar("12"), Value::Integer(12));
        assert_eq!(scalar("0.5"), Value::Float(0.5));
        assert_eq!(scalar("true"), Value::Boolean(true));
        assert_eq!(scalar("127.0.0.1:9092"), Value::String("127.0.0.1:9092".into()));
        // times and dates stay as written
        assert_eq!(scalar("15:30"), Value::String("15:30".into()));
    }
}
