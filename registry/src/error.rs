//! Registry errors with Confluent's HTTP statuses, error codes and messages.

/// An error as the Confluent REST API reports it: `{"error_code": ..., "message": ...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryError {
    /// HTTP status.
    pub status: u16,
    /// Confluent error code.
    pub code: u32,
    /// What went wrong.
    pub message: String,
}

impl RegistryError {
    fn new(status: u16, code: u32, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 40401
    pub fn subject_not_found(subject: &str) -> Self {
        Self::new(404, 40401, format!("Subject '{subject}' not found."))
    }
    /// 40402
    pub fn version_not_found(version: u32) -> Self {
        Self::new(404, 40402, format!("Version {version} not found."))
    }
    /// 40403
    pub fn schema_not_found(detail: &str) -> Self {
        Self::new(404, 40403, format!("Schema {detail}not found."))
    }
    /// 40404
    pub fn subject_soft_deleted(subject: &str) -> Self {
        Self::new(
            404,
            40404,
            format!("Subject '{subject}' was soft deleted. Set permanent=true to delete permanently"),
        )
    }
    /// 40405
    pub fn subject_not_soft_deleted(subject: &str) -> Self {
        Self::new(
            404,
            40405,
            format!("Subject '{subject}' was not deleted first before being permanently deleted"),
        )
    }
    /// 40406
    pub fn version_soft_deleted(subject: &str, version: u32) -> Self {
        Self::new(
            404,
            40406,
            format!("Subject '{subject}' Version {version} was soft deleted. Set permanent=true to delete permanently"),
        )
    }
    /// 40407
    pub fn version_not_soft_deleted(subject: &str, version: u32) -> Self {
        Self::new(
            404,
            40407,
            format!("Subject '{subject}' Version {version} was not deleted first before being permanently deleted"),
        )
    }
    /// 40408
    pub fn subject_level_not_configured(subject: &str) -> Self {
        Self::new(
            404,
            40408,
            format!("Subject '{subject}' does not have subject-level compatibility configured"),
        )
    }
    /// 42201
    pub fn invalid_schema(detail: impl std::fmt::Display) -> Self {
        Self::new(422, 42201, format!("Invalid schema: {detail}"))
    }
    /// 42202
    pub fn invalid_version(version: &str) -> Self {
        Self::new(
            422,
            42202,
            format!("The specified version '{version}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\""),
        )
    }
    /// 42203
    pub fn invalid_level(level: &str) -> Self {
        Self::new(
            422,
            42203,
            format!(
                "Invalid compatibility level '{level}'. Valid values are {}",
                chainflow_contract::compat::VALID_LEVELS
            ),
        )
    }
    /// 409
    pub fn incompatible(subject: &str, detail: &str) -> Self {
        Self::new(
            409,
            409,
            format!("Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: {detail}"),
        )
    }
    /// 400: a body that is not the JSON the endpoint expects.
    pub fn bad_request(detail: impl std::fmt::Display) -> Self {
        Self::new(400, 400, format!("Bad request: {detail}"))
    }
    /// 50001
    pub fn store(detail: impl std::fmt::Display) -> Self {
        Self::new(500, 50001, format!("Error in the backend data store: {detail}"))
    }

    /// 42205, as Confluent's registry answers a write in `READONLY` mode.
    pub fn read_only() -> Self {
        Self::new(
            422,
            42205,
            "This registry is read-only (registry.read_only): changes are refused",
        )
    }

    /// 413: a request or schema above the configured limit.
    pub fn too_large(what: &str, limit: usize, field: &str) -> Self {
        Self::new(413, 413, format!("The {what} is larger than {limit} bytes ({field})"))
    }

    /// 401: no or wrong credentials.
    pub fn unauthorized() -> Self {
        Self::new(
            401,
            40101,
            "Unauthorized: basic authentication with a registry user is required",
        )
    }

    /// 403: a read-only user asked for a change.
    pub fn forbidden(user: &str) -> Self {
        Self::new(
            403,
            40301,
            format!(
                "User {user} is read-only: registrations, deletions and configuration changes need a read-write user"
            ),
        )
    }
}
