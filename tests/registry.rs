//! The Schema Registry against the real broker: registration, errors, persistence across a
//! restart, and two independent clients (schema_registry_converter and Confluent's Python
//! client). Needs the local stack (ops/stack.sh up).

mod common;

use common::{chainflow, free_port, stack, wait_http, Names, Proc};
use schema_registry_converter::async_impl::schema_registry::{get_schema_by_id, post_schema, SrSettings};
use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};
use serde_json::{json, Value};

const V1: &str = r#"{"type":"record","name":"Quote","namespace":"t","fields":[{"name":"bid","type":"double"}]}"#;
const V2: &str = r#"{"type":"record","name":"Quote","namespace":"t","fields":[{"name":"bid","type":"double"},{"name":"ask","type":["null","double"],"default":null}]}"#;
const INCOMPATIBLE: &str =
    r#"{"type":"record","name":"Quote","namespace":"t","fields":[{"name":"bid","type":"string"}]}"#;

/// A registry of its own (own port, own state topic), so the test never touches the
/// stack's `_schemas`.
struct TestRegistry {
    url: String,
    listen: String,
    topic: String,
}

impl TestRegistry {
    fn new(names: &Names) -> Self {
        let port = free_port();
        Self {
            url: format!("http://127.0.0.1:{port}"),
            listen: format!("127.0.0.1:{port}"),
            topic: names.topic("_schemas"),
        }
    }

    async fn start(&self) -> Proc {
        let p = chainflow(&["registry"])
            .env("CHAINFLOW_REGISTRY__LISTEN", &self.listen)
            .env("CHAINFLOW_REGISTRY__TOPIC", &self.topic)
            .spawn();
        wait_http(&format!("{}/subjects", self.url), 60).await;
        p
    }

    fn settings(&self) -> SrSettings {
        SrSettings::new(self.url.clone())
    }
}

fn avro(schema: &str) -> SuppliedSchema {
    SuppliedSchema::new(None, SchemaType::Avro, schema.to_string())
}

async fn call(method: reqwest::Method, url: String, body: Option<Value>) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method, url);
    if let Some(b) = body {
        req = req
            .header("content-type", "application/vnd.schemaregistry.v1+json")
            .body(b.to_string());
    }
    let resp = req.send().await.expect("registry answers");
    let status = resp.status().as_u16();
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert_eq!(ct, "application/vnd.schemaregistry.v1+json");
    (status, resp.json().await.expect("a JSON body"))
}

#[tokio::test(flavor = "multi_thread")]
async fn registry_is_idempotent_refuses_incompatible_schemas_and_survives_restarts() {
    let _ = stack();
    let names = Names::new("registry");
    let reg = TestRegistry::new(&names);
    let sr = reg.settings();
    let first = reg.start().await;

    // registration through the client the pipeline uses; the same schema gets the same id,
    // under another subject too (ids are global)
    let id = post_schema(&sr, "quotes-value".into(), avro(V1)).await.unwrap().id;
    assert_eq!(post_schema(&sr, "quotes-value".into(), avro(V1)).await.unwrap().id, id);
    assert_eq!(post_schema(&sr, "other-value".into(), avro(V1)).await.unwrap().id, id);
    let id2 = post_schema(&sr, "quotes-value".into(), avro(V2)).await.unwrap().id;
    assert_ne!(id2, id);

    // an incompatible change is refused with Confluent's 409
    let (status, body) = call(
        reqwest::Method::POST,
        format!("{}/subjects/quotes-value/versions", reg.url),
        Some(json!({ "schema": INCOMPATIBLE })),
    )
    .await;
    assert_eq!((status, body["error_code"].as_u64()), (409, Some(409)), "{body}");
    let (_, body) = call(
        reqwest::Method::POST,
        format!(
            "{}/compatibility/subjects/quotes-value/versions/latest?verbose=true",
            reg.url
        ),
        Some(json!({ "schema": INCOMPATIBLE })),
    )
    .await;
    assert_eq!(body["is_compatible"], json!(false));
    assert!(body["messages"][0].as_str().unwrap().contains("version 2"), "{body}");

    // errors carry Confluent's codes
    for (path, want) in [
        ("/subjects/nope/versions/1", 40401),
        ("/subjects/quotes-value/versions/9", 40402),
        ("/schemas/ids/999999", 40403),
        ("/subjects/quotes-value/versions/x", 42202),
    ] {
        let (_, body) = call(reqwest::Method::GET, format!("{}{path}", reg.url), None).await;
        assert_eq!(body["error_code"].as_u64(), Some(want), "{path}: {body}");
    }
    let (status, body) = call(
        reqwest::Method::POST,
        format!("{}/subjects/x-value/versions", reg.url),
        Some(json!({"schema": "{nope"})),
    )
    .await;
    assert_eq!((status, body["error_code"].as_u64()), (422, Some(42201)), "{body}");
    let (_, body) = call(reqwest::Method::GET, format!("{}/config", reg.url), None).await;
    assert_eq!(body["compatibilityLevel"], "BACKWARD");

    // the state lives in the topic: a new process rebuilds it with the same ids
    drop(first);
    let _second = reg.start().await;
    let schema = get_schema_by_id(id, &sr).await.unwrap();
    assert_eq!(schema.schema, V1);
    assert_eq!(post_schema(&sr, "quotes-value".into(), avro(V2)).await.unwrap().id, id2);
    let (_, versions) = call(
        reqwest::Method::GET,
        format!("{}/subjects/quotes-value/versions", reg.url),
        None,
    )
    .await;
    assert_eq!(versions, json!([1, 2]));
    let v3 = r#"{"type":"record","name":"Quote","namespace":"t","fields":[{"name":"bid","type":"double"},{"name":"ask","type":["null","double"],"default":null},{"name":"last","type":["null","double"],"default":null}]}"#;
    let id3 = post_schema(&sr, "quotes-value".into(), avro(v3)).await.unwrap().id;
    assert!(id3 > id2, "ids are never reused after a restart: {id3} after {id2}");

    // an independent client, Confluent's own, works against it
    let out = std::process::Command::new("python3")
        .args([
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/registry_client.py"),
            &reg.url,
            names.tag(),
        ])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "python client failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
