//! The Confluent Schema Registry REST API.

use crate::error::RegistryError;
use crate::instance::Instance;
use crate::store::{parse, SubjectVersion};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chainflow_contract::compat::Level;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// Content type of every answer.
pub const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// What the handlers share: the instance, and the largest schema accepted.
pub struct Api {
    /// The registry instance.
    pub instance: Arc<Instance>,
    /// `registry.max_schema_bytes`.
    pub max_schema_bytes: usize,
}

type Shared = Arc<Api>;
type Params = Query<HashMap<String, String>>;
type Reply = Result<Value, RegistryError>;

/// The registry's routes.
pub fn router(registry: Shared) -> Router {
    Router::new()
        .route("/", get(|| async { reply(Ok(json!({}))) }))
        .route("/subjects", get(list_subjects))
        .route("/subjects/{subject}", post(lookup).delete(delete_subject))
        .route("/subjects/{subject}/versions", get(list_versions).post(register))
        .route(
            "/subjects/{subject}/versions/{version}",
            get(get_version).delete(delete_version),
        )
        .route("/subjects/{subject}/versions/{version}/schema", get(get_version_schema))
        .route("/schemas/types", get(|| async { reply(Ok(json!(["AVRO"]))) }))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/schema", get(raw_schema_by_id))
        .route("/schemas/ids/{id}/subjects", get(subjects_by_id))
        .route("/schemas/ids/{id}/versions", get(versions_by_id))
        .route("/compatibility/subjects/{subject}/versions", post(check_all))
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(check_version),
        )
        .route("/config", get(get_global_config).put(put_global_config))
        .route(
            "/config/{subject}",
            get(get_subject_config)
                .put(put_subject_config)
                .delete(delete_subject_config),
        )
        .with_state(registry)
        .layer(axum::middleware::from_fn(count_requests))
}

/// Counts each answered request by method and status (`chainflow_registry_requests_total`).
async fn count_requests(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let method = req.method().as_str().to_string();
    let response = next.run(req).await;
    metrics::counter!("chainflow_registry_requests_total", "method" => method, "status" => response.status().as_u16().to_string())
        .increment(1);
    response
}

/// Shows the registry's event counters at 0 from the start.
pub fn announce_metrics() {
    for name in [
        "chainflow_registry_claims_lost_total",
        "chainflow_registry_refused_records_total",
        "chainflow_registry_lost_ids_detected_total",
        "chainflow_registry_auth_failures_total",
    ] {
        metrics::counter!(name).increment(0);
    }
}

/// An answer in Confluent's shape: the value, or `{"error_code", "message"}` with the
/// error's status.
pub fn reply(result: Reply) -> Response {
    let (status, body) = match result {
        Ok(v) => (StatusCode::OK, v),
        Err(e) => (
            StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            json!({"error_code": e.code, "message": e.message}),
        ),
    };
    (status, [(header::CONTENT_TYPE, CONTENT_TYPE)], body.to_string()).into_response()
}

fn flag(params: &HashMap<String, String>, name: &str) -> bool {
    params.get(name).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

#[derive(Deserialize)]
struct SchemaBody {
    schema: String,
    #[serde(rename = "schemaType", default)]
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<Value>,
}

/// Parses a `{"schema": ...}` body; only Avro without references is supported, up to
/// `registry.max_schema_bytes`.
fn schema_body(r: &Api, body: &Bytes) -> Result<String, RegistryError> {
    let b: SchemaBody = serde_json::from_slice(body).map_err(RegistryError::bad_request)?;
    if b.schema.len() > r.max_schema_bytes {
        return Err(RegistryError::too_large(
            "schema",
            r.max_schema_bytes,
            "registry.max_schema_bytes",
        ));
    }
    match b.schema_type.as_deref() {
        None | Some("AVRO") => {}
        Some(other) => {
            return Err(RegistryError::invalid_schema(format!(
                "schemaType {other} is not supported; this registry serves AVRO"
            )))
        }
    }
    if !b.references.is_empty() {
        return Err(RegistryError::invalid_schema("schema references are not supported"));
    }
    Ok(b.schema)
}

fn version_json(v: &SubjectVersion) -> Value {
    json!({"subject": v.subject, "version": v.version, "id": v.id, "schema": v.schema})
}

async fn list_subjects(State(r): State<Shared>, Query(p): Params) -> Response {
    reply(Ok(json!(r.instance.read().await.subjects(flag(&p, "deleted")))))
}

async fn list_versions(State(r): State<Shared>, Path(subject): Path<String>, Query(p): Params) -> Response {
    reply(
        r.instance
            .read()
            .await
            .versions(&subject, flag(&p, "deleted"))
            .map(|v| json!(v)),
    )
}

async fn get_version(
    State(r): State<Shared>,
    Path((subject, version)): Path<(String, String)>,
    Query(p): Params,
) -> Response {
    reply(
        r.instance
            .read()
            .await
            .version(&subject, &version, flag(&p, "deleted"))
            .map(|v| version_json(&v)),
    )
}

async fn get_version_schema(State(r): State<Shared>, Path((subject, version)): Path<(String, String)>) -> Response {
    match r.instance.read().await.version(&subject, &version, false) {
        Ok(v) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], v.schema).into_response(),
        Err(e) => reply(Err(e)),
    }
}

async fn register(State(r): State<Shared>, Path(subject): Path<String>, body: Bytes) -> Response {
    let result = async {
        let raw = schema_body(&r, &body)?;
        let (id, created) = r.instance.register(&subject, &raw).await?;
        if created {
            tracing::info!(subject = %subject, id, "schema version registered");
        }
        Ok(json!({ "id": id }))
    }
    .await;
    reply(result)
}

async fn lookup(State(r): State<Shared>, Path(subject): Path<String>, Query(p): Params, body: Bytes) -> Response {
    let result = async {
        let raw = schema_body(&r, &body)?;
        r.instance
            .read()
            .await
            .lookup(&subject, &raw, flag(&p, "deleted"))
            .map(|v| version_json(&v))
    }
    .await;
    reply(result)
}

async fn delete_subject(State(r): State<Shared>, Path(subject): Path<String>, Query(p): Params) -> Response {
    let permanent = flag(&p, "permanent");
    reply(
        r.instance
            .change(|s| s.delete_subject(&subject, permanent))
            .await
            .map(|v| json!(v)),
    )
}

async fn delete_version(
    State(r): State<Shared>,
    Path((subject, version)): Path<(String, String)>,
    Query(p): Params,
) -> Response {
    let permanent = flag(&p, "permanent");
    reply(
        r.instance
            .change(|s| {
                s.delete_version(&subject, &version, permanent)
                    .map(|(v, e)| (v, vec![e]))
            })
            .await
            .map(|v| json!(v)),
    )
}

fn schema_id(id: &str) -> Result<u32, RegistryError> {
    id.parse()
        .map_err(|_| RegistryError::schema_not_found(&format!("{id} ")))
}

/// The schema with id `id` (looked for up to the log's end when unknown).
async fn stored(r: &Api, id: &str) -> Result<(u32, crate::store::StoredSchema), RegistryError> {
    let n = schema_id(id)?;
    r.instance
        .schema(n)
        .await
        .map(|s| (n, s))
        .ok_or_else(|| RegistryError::schema_not_found(&format!("{n} ")))
}

async fn schema_by_id(State(r): State<Shared>, Path(id): Path<String>) -> Response {
    reply(stored(&r, &id).await.map(|(_, s)| json!({ "schema": s.raw })))
}

async fn raw_schema_by_id(State(r): State<Shared>, Path(id): Path<String>) -> Response {
    match stored(&r, &id).await {
        Ok((_, s)) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], s.raw).into_response(),
        Err(e) => reply(Err(e)),
    }
}

async fn usages(r: &Api, id: &str) -> Result<Vec<(String, u32)>, RegistryError> {
    let (n, _) = stored(r, id).await?;
    Ok(r.instance.read().await.usages(n))
}

async fn subjects_by_id(State(r): State<Shared>, Path(id): Path<String>) -> Response {
    reply(usages(&r, &id).await.map(|u| {
        let mut subjects: Vec<String> = u.into_iter().map(|(s, _)| s).collect();
        subjects.dedup();
        json!(subjects)
    }))
}

async fn versions_by_id(State(r): State<Shared>, Path(id): Path<String>) -> Response {
    reply(usages(&r, &id).await.map(|u| {
        json!(u
            .into_iter()
            .map(|(s, v)| json!({"subject": s, "version": v}))
            .collect::<Vec<_>>())
    }))
}

async fn compatibility(r: &Api, subject: &str, version: Option<&str>, verbose: bool, body: &Bytes) -> Reply {
    let raw = schema_body(r, body)?;
    let (parsed, _) = parse(&raw)?;
    let store = r.instance.read().await;
    let against = if let Some(v) = version {
        Some(store.version(subject, v, false)?.version)
    } else {
        store.versions(subject, false)?;
        None
    };
    let why = store.check(subject, &parsed, against)?;
    let mut answer = json!({ "is_compatible": why.is_none() });
    if verbose {
        answer["messages"] = json!(why.into_iter().collect::<Vec<_>>());
    }
    Ok(answer)
}

async fn check_version(
    State(r): State<Shared>,
    Path((subject, version)): Path<(String, String)>,
    Query(p): Params,
    body: Bytes,
) -> Response {
    reply(compatibility(&r, &subject, Some(&version), flag(&p, "verbose"), &body).await)
}

async fn check_all(State(r): State<Shared>, Path(subject): Path<String>, Query(p): Params, body: Bytes) -> Response {
    reply(compatibility(&r, &subject, None, flag(&p, "verbose"), &body).await)
}

/// Parses `{"compatibility": "FULL"}` (or `compatibilityLevel`).
fn level_body(body: &Bytes) -> Result<Level, RegistryError> {
    let v: Value = serde_json::from_slice(body).map_err(RegistryError::bad_request)?;
    let name = v
        .get("compatibility")
        .or_else(|| v.get("compatibilityLevel"))
        .and_then(Value::as_str)
        .ok_or_else(|| RegistryError::bad_request("expected {\"compatibility\": \"<LEVEL>\"}"))?;
    name.parse().map_err(|()| RegistryError::invalid_level(name))
}

async fn get_global_config(State(r): State<Shared>) -> Response {
    reply(Ok(
        json!({ "compatibilityLevel": r.instance.read().await.level(None).to_string() }),
    ))
}

async fn put_config(r: &Api, subject: Option<String>, body: &Bytes) -> Reply {
    let level = level_body(body)?;
    r.instance
        .change(|_| {
            Ok((
                (),
                vec![crate::log::Entry::Config {
                    subject,
                    level: Some(level),
                }],
            ))
        })
        .await?;
    Ok(json!({ "compatibility": level.to_string() }))
}

async fn put_global_config(State(r): State<Shared>, body: Bytes) -> Response {
    reply(put_config(&r, None, &body).await)
}

async fn put_subject_config(State(r): State<Shared>, Path(subject): Path<String>, body: Bytes) -> Response {
    reply(put_config(&r, Some(subject), &body).await)
}

async fn get_subject_config(State(r): State<Shared>, Path(subject): Path<String>, Query(p): Params) -> Response {
    let store = r.instance.read().await;
    let level = match store.subject_level(&subject) {
        Some(l) => Ok(l),
        None if flag(&p, "defaultToGlobal") => Ok(store.level(None)),
        None => Err(RegistryError::subject_level_not_configured(&subject)),
    };
    reply(level.map(|l| json!({ "compatibilityLevel": l.to_string() })))
}

async fn delete_subject_config(State(r): State<Shared>, Path(subject): Path<String>) -> Response {
    let result = r
        .instance
        .change(|store| {
            let previous = store
                .subject_level(&subject)
                .ok_or_else(|| RegistryError::subject_level_not_configured(&subject))?;
            Ok((
                previous,
                vec![crate::log::Entry::Config {
                    subject: Some(subject.clone()),
                    level: None,
                }],
            ))
        })
        .await;
    reply(result.map(|l| json!({ "compatibilityLevel": l.to_string() })))
}
