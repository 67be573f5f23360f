//! Who may do what: HTTP basic auth against `[registry.users.NAME]` (argon2id hashes), the
//! read-only role, and the request size limit, in front of the REST API. The process's
//! own routes (`/metrics`, `/healthz`, `/readyz`) are not behind it.

use crate::api::reply;
use crate::error::RegistryError;
use anyhow::{bail, Result};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::{Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use chainflow_config::{RegistryConfig, RegistryRole};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// Hashes `password` for `[registry.users.NAME].password_hash`: argon2id with the
/// algorithm's default cost and a random salt, in PHC form.
pub fn hash_password(password: &str) -> Result<String> {
    let salt =
        SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(|e| anyhow::anyhow!("making a salt: {e}"))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))
}

/// One configured user.
struct User {
    role: RegistryRole,
    hash: String,
}

/// The gate in front of the API.
pub struct Gate {
    users: BTreeMap<String, User>,
    max_request_bytes: usize,
    /// Per user, the SHA-256 of the last `Authorization` value that verified, so that a
    /// client's every request does not cost an argon2 computation.
    verified: Mutex<HashMap<String, [u8; 32]>>,
}

impl Gate {
    /// The gate of `section`; a hash that is not a valid argon2id PHC string is an error
    /// naming its user.
    pub fn new(section: &RegistryConfig) -> Result<Self> {
        let mut users = BTreeMap::new();
        for (name, user) in &section.users {
            match PasswordHash::new(&user.password_hash) {
                Ok(h) if h.algorithm.as_str() == "argon2id" => {}
                _ => bail!(
                    "registry.users.{name}.password_hash: not a valid argon2id hash; \
                     create one with `chainflow registry hash-password`"
                ),
            }
            users.insert(
                name.clone(),
                User {
                    role: user.role,
                    hash: user.password_hash.clone(),
                },
            );
        }
        Ok(Self {
            users,
            max_request_bytes: section.max_request_bytes,
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// True when requests must authenticate.
    pub fn authenticates(&self) -> bool {
        !self.users.is_empty()
    }

    /// The user `authorization` authenticates, if any.
    async fn user(&self, authorization: &str) -> Option<(&str, RegistryRole)> {
        let encoded = authorization.strip_prefix("Basic ")?;
        let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (name, password) = text.split_once(':')?;
        let (name, user) = self.users.get_key_value(name)?;
        let digest: [u8; 32] = Sha256::digest(authorization.as_bytes()).into();
        if self.verified.lock().expect("not poisoned").get(name) == Some(&digest) {
            return Some((name, user.role));
        }
        let (hash, password) = (user.hash.clone(), password.to_string());
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
        })
        .await
        .unwrap_or(false);
        if !ok {
            return None;
        }
        self.verified.lock().expect("not poisoned").insert(name.clone(), digest);
        Some((name, user.role))
    }
}

/// Whether a request changes the registry: registrations, deletions, configuration.
/// Lookups (`POST /subjects/{s}`) and compatibility checks only read.
pub fn is_change(method: &Method, path: &str) -> bool {
    match *method {
        Method::PUT | Method::DELETE => true,
        Method::POST => path.starts_with("/subjects/") && path.trim_end_matches('/').ends_with("/versions"),
        _ => false,
    }
}

/// The middleware: size first (413), then authentication (401) and role (403).
pub async fn check(State(gate): State<Arc<Gate>>, request: Request, next: Next) -> Response {
    let length = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if length.is_some_and(|n| n > gate.max_request_bytes) {
        return reply(Err(RegistryError::too_large(
            "request body",
            gate.max_request_bytes,
            "registry.max_request_bytes",
        )));
    }
    if gate.authenticates() {
        let authorization = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let Some((name, role)) = gate.user(authorization).await else {
            metrics::counter!("chainflow_registry_auth_failures_total").increment(1);
            let mut response = reply(Err(RegistryError::unauthorized()));
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Basic realm=\"chainflow-registry\""),
            );
            return response;
        };
        if role == RegistryRole::ReadOnly && is_change(request.method(), request.uri().path()) {
            return reply(Err(RegistryError::forbidden(name))).into_response();
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use chainflow_config::RegistryUser;

    #[test]
    fn changes_are_told_from_reads() {
        assert!(is_change(&Method::POST, "/subjects/a-value/versions"));
        assert!(is_change(&Method::DELETE, "/subjects/a-value"));
        assert!(is_change(&Method::PUT, "/config"));
        assert!(!is_change(&Method::POST, "/subjects/a-value"));
        assert!(!is_change(
            &Method::POST,
            "/compatibility/subjects/a-value/versions/latest"
        ));
        assert!(!is_change(&Method::GET, "/subjects/a-value/versions"));
    }

    #[tokio::test]
    async fn a_hashed_password_verifies_and_nothing_else_does() {
        let hash = hash_password("918273645").unwrap();
        assert!(hash.starts_with("$argon2id$") && !hash.contains("918273645"));
        let mut section = RegistryConfig::default();
        section.users.insert(
            "alice".into(),
            RegistryUser {
                role: RegistryRole::ReadOnly,
                password_hash: hash,
            },
        );
        let gate = Gate::new(&section).unwrap();
        let basic = |s: &str| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(s));
        assert_eq!(
            gate.user(&basic("alice:918273645")).await,
            Some(("alice", RegistryRole::ReadOnly))
        );
        // again, from the cache
        assert!(gate.user(&basic("alice:918273645")).await.is_some());
        assert_eq!(gate.user(&basic("alice:wrong")).await, None);
        assert_eq!(gate.user(&basic("bob:918273645")).await, None);
        assert_eq!(gate.user("Bearer x").await, None);
        // a hash of another algorithm is refused at start, naming the user
        section.users.get_mut("alice").unwrap().password_hash = "$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$aGFzaA".into();
        let e = Gate::new(&section).err().unwrap().to_string();
        assert!(e.contains("registry.users.alice.password_hash"), "{e}");
    }
}
