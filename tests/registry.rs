//! The Schema Registry against the real broker: registration, errors, persistence across a
//! restart, two independent clients (schema_registry_converter and Confluent's Python
//! client); several instances on one topic agreeing on ids while one is killed; ids that
//! survive hard deletes and a wiped topic; topics that would lose records refused; basic
//! auth with roles, TLS, size limits and a read-only instance. Needs the local stack
//! (ops/stack.sh up).

#![allow(
    clippy::too_many_lines,
    reason = "a test is one scenario on the real stack, read top to bottom: its steps and checks stay together"
)]

mod common;

use common::{chainflow, free_port, stack, Names, Proc};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::{Offset, TopicPartitionList};
use schema_registry_converter::async_impl::schema_registry::{get_schema_by_id, post_schema, SrSettings};
use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const V1: &str = r#"{"type":"record","name":"Quote","namespace":"t","fields":[{"name":"bid","type":"double"}]}"#;
const V2: &str = r#"{"type":"record","name":"Quote","namespace":"t","fields":[{"name":"bid","type":"double"},{"name":"ask","type":["null","double"],"default":null}]}"#;
const INCOMPATIBLE: &str =
    r#"{"type":"record","name":"Quote","namespace":"t","fields":[{"name":"bid","type":"string"}]}"#;

/// A registry of its own (own port, own state topic, own state directory), so the test
/// never touches the stack's `_schemas`; siblings share its topic.
struct TestRegistry {
    url: String,
    listen: String,
    topic: String,
    state_dir: PathBuf,
    env: Vec<(String, String)>,
    /// The CA to trust, for an `https://` registry.
    ca: Option<PathBuf>,
}

impl TestRegistry {
    fn new(names: &Names) -> Self {
        Self::on_topic(names.topic("_schemas"), names.tag())
    }

    /// An instance on `topic`, with a state directory of its own.
    fn on_topic(topic: String, tag: &str) -> Self {
        let port = free_port();
        let state_dir = std::env::temp_dir().join(format!("chainflow-registry-{tag}-{port}"));
        Self {
            url: format!("http://127.0.0.1:{port}"),
            listen: format!("127.0.0.1:{port}"),
            topic,
            state_dir,
            env: Vec::new(),
            ca: None,
        }
    }

    /// Another instance on the same topic (another machine: its own port and state).
    fn sibling(&self) -> Self {
        Self::on_topic(self.topic.clone(), &format!("sibling-{}", std::process::id()))
    }

    fn with(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Serves HTTPS with `cert` and `key`, trusting `cert` as the CA.
    fn https(mut self, cert: &Path, key: &Path) -> Self {
        self.url = self.url.replace("http://", "https://");
        self.ca = Some(cert.to_path_buf());
        self.with("CHAINFLOW_REGISTRY__TLS__CERT_FILE", &cert.display().to_string())
            .with("CHAINFLOW_REGISTRY__TLS__KEY_FILE", &key.display().to_string())
    }

    fn spawn(&self) -> Proc {
        let mut cmd = chainflow(&["registry"])
            .env("CHAINFLOW_REGISTRY__LISTEN", &self.listen)
            .env("CHAINFLOW_REGISTRY__TOPIC", &self.topic)
            .env("CHAINFLOW_REGISTRY__STATE_DIR", &self.state_dir);
        for (k, v) in &self.env {
            cmd = cmd.env(k, v);
        }
        cmd.spawn()
    }

    /// Starts an instance and waits until it is ready.
    async fn start(&self) -> Proc {
        let p = self.spawn();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = self.client().get(format!("{}/readyz", self.url)).send().await {
                if r.status().is_success() {
                    return p;
                }
            }
            assert!(Instant::now() < deadline, "{} was not ready within 60 s", self.url);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn client(&self) -> reqwest::Client {
        let mut b = reqwest::Client::builder().timeout(Duration::from_secs(30));
        if let Some(ca) = &self.ca {
            let pem = std::fs::read(ca).expect("the test CA");
            b = b.add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("a PEM certificate"));
        }
        b.build().expect("an HTTP client")
    }

    fn settings(&self) -> SrSettings {
        SrSettings::new(self.url.clone())
    }

    /// `method path` with an optional JSON body and basic auth; the status and the body.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        user: Option<(&str, &str)>,
    ) -> (u16, Value) {
        self.try_call(method, path, body, user).await.expect("registry answers")
    }

    /// The same, `None` when the registry does not answer at all.
    async fn try_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        user: Option<(&str, &str)>,
    ) -> Option<(u16, Value)> {
        let mut req = self.client().request(method, format!("{}{path}", self.url));
        if let Some(b) = body {
            req = req
                .header("content-type", "application/vnd.schemaregistry.v1+json")
                .body(b.to_string());
        }
        if let Some((u, p)) = user {
            req = req.basic_auth(u, Some(p));
        }
        let resp = req.send().await.ok()?;
        let status = resp.status().as_u16();
        let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert_eq!(ct, "application/vnd.schemaregistry.v1+json", "{path}");
        Some((status, resp.json().await.ok()?))
    }

    /// `POST path` with `{"schema": schema}`, unauthenticated.
    async fn post(&self, path: &str, schema: &str) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(json!({ "schema": schema })), None)
            .await
    }

    /// Registers `schema` under `subject`: the id, or what was answered instead (`None`:
    /// no answer).
    async fn register(&self, subject: &str, schema: &str) -> Result<u64, Option<(u16, Value)>> {
        let answer = self
            .try_call(
                reqwest::Method::POST,
                &format!("/subjects/{subject}/versions"),
                Some(json!({ "schema": schema })),
                None,
            )
            .await;
        match &answer {
            Some((200, body)) => body["id"].as_u64().ok_or(answer),
            _ => Err(answer),
        }
    }
}

fn avro(schema: &str) -> SuppliedSchema {
    SuppliedSchema::new(None, SchemaType::Avro, schema.to_string())
}

fn admin() -> AdminClient<DefaultClientContext> {
    chainflow_kafka::producer_config(&stack().kafka)
        .create()
        .expect("an admin client")
}

/// Runs Confluent's Python client (`tests/registry_client.py`) against `url`, with
/// subjects prefixed by `prefix` and `extra` arguments (user and CA file); fails the test
/// with the client's output when a check fails.
fn python_client(url: &str, prefix: &str, extra: &[&str]) {
    let out = std::process::Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/registry_client.py"))
        .args([url, prefix])
        .args(extra)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "python client failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A record schema of its own for `i`.
fn numbered(i: usize) -> String {
    format!(r#"{{"type":"record","name":"R{i}","namespace":"multi","fields":[{{"name":"f","type":"long"}}]}}"#)
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
    let (status, body) = reg.post("/subjects/quotes-value/versions", INCOMPATIBLE).await;
    assert_eq!((status, body["error_code"].as_u64()), (409, Some(409)), "{body}");
    let (_, body) = reg
        .post(
            "/compatibility/subjects/quotes-value/versions/latest?verbose=true",
            INCOMPATIBLE,
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
        let (_, body) = reg.call(reqwest::Method::GET, path, None, None).await;
        assert_eq!(body["error_code"].as_u64(), Some(want), "{path}: {body}");
    }
    let (status, body) = reg.post("/subjects/x-value/versions", "{nope").await;
    assert_eq!((status, body["error_code"].as_u64()), (422, Some(42201)), "{body}");
    // the contract's level until set otherwise (registry.compatibility); Confluent's is BACKWARD
    let (_, body) = reg.call(reqwest::Method::GET, "/config", None, None).await;
    assert_eq!(body["compatibilityLevel"], "FULL");

    // the state lives in the topic: a new process rebuilds it with the same ids
    drop(first);
    let _second = reg.start().await;
    let schema = get_schema_by_id(id, &sr).await.unwrap();
    assert_eq!(schema.schema, V1);
    assert_eq!(post_schema(&sr, "quotes-value".into(), avro(V2)).await.unwrap().id, id2);
    let (_, versions) = reg
        .call(reqwest::Method::GET, "/subjects/quotes-value/versions", None, None)
        .await;
    assert_eq!(versions, json!([1, 2]));
    let v3 = r#"{"type":"record","name":"Quote","namespace":"t","fields":[{"name":"bid","type":"double"},{"name":"ask","type":["null","double"],"default":null},{"name":"last","type":["null","double"],"default":null}]}"#;
    let id3 = post_schema(&sr, "quotes-value".into(), avro(v3)).await.unwrap().id;
    assert!(id3 > id2, "ids are never reused after a restart: {id3} after {id2}");

    // an independent client, Confluent's own, works against it
    python_client(&reg.url, names.tag(), &[]);
}

#[tokio::test(flavor = "multi_thread")]
async fn several_instances_on_one_topic_agree_on_ids_while_one_is_killed() {
    let _ = stack();
    let names = Names::new("registry_multi");
    let regs = {
        let a = TestRegistry::new(&names);
        let (b, c) = (a.sibling(), a.sibling());
        [a, b, c]
    };
    let mut procs = Vec::new();
    for r in &regs {
        procs.push(r.start().await);
    }
    // versions of one subject need not be compatible here: several schemas race per subject
    let (status, _) = regs[0]
        .call(
            reqwest::Method::PUT,
            "/config",
            Some(json!({"compatibility": "NONE"})),
            None,
        )
        .await;
    assert_eq!(status, 200);

    // 30 registrations at once over the three instances: 24 schemas, 6 of them twice (on
    // another instance, under another subject), 4 subjects; the third instance is killed
    // while they run
    let tag = names.tag();
    let served = |round: usize, n: usize| {
        let regs = &regs;
        (0..n).map(move |i| {
            let schema_no = round * 100 + i % 24;
            let subject = format!("{tag}-s{}-value", (i + round) % 4);
            async move {
                let reg = &regs[i % 3];
                (
                    schema_no,
                    subject.clone(),
                    reg.register(&subject, &numbered(schema_no)).await,
                )
            }
        })
    };
    let first = futures::future::join_all(served(0, 30));
    let killer = async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        procs[2].signal("KILL");
    };
    let (first, ()) = tokio::join!(first, killer);
    let restarted = regs[2].start().await;
    procs[2] = restarted;
    let second = futures::future::join_all(served(1, 12)).await;

    // every schema served has one id, every id one schema
    let mut ids: BTreeMap<usize, u64> = BTreeMap::new();
    let mut failed = 0;
    for (schema_no, subject, result) in first.into_iter().chain(second) {
        match result {
            Ok(id) => {
                if let Some(before) = ids.insert(schema_no, id) {
                    assert_eq!(
                        before, id,
                        "schema {schema_no} got two ids (the second under {subject})"
                    );
                }
            }
            Err(None) => failed += 1, // sent to the killed instance
            Err(Some(answer)) => panic!("registering schema {schema_no} under {subject}: {answer:?}"),
        }
    }
    let mut owners: BTreeMap<u64, usize> = BTreeMap::new();
    for (schema_no, id) in &ids {
        if let Some(other) = owners.insert(*id, *schema_no) {
            panic!("id {id} was given to schema {other} and to schema {schema_no}");
        }
    }
    assert!(
        ids.len() >= 24,
        "only {} schemas registered ({failed} requests failed)",
        ids.len()
    );
    let mut lost = 0.0;
    for r in &regs {
        let metrics = r
            .client()
            .get(format!("{}/metrics", r.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        lost += metrics
            .lines()
            .filter(|l| l.starts_with("chainflow_registry_claims_lost_total"))
            .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
            .sum::<f64>();
    }
    eprintln!("{} schemas registered, {failed} requests lost with the killed instance, {lost} claims lost to another instance", ids.len());
    assert!(
        failed <= 10,
        "{failed} registrations failed; only those to the killed instance may"
    );

    // every instance serves every id, and the same versions of every subject
    for (schema_no, id) in &ids {
        for r in &regs {
            let (status, body) = r
                .call(reqwest::Method::GET, &format!("/schemas/ids/{id}"), None, None)
                .await;
            assert_eq!(status, 200, "{} does not serve id {id}: {body}", r.url);
            assert_eq!(
                body["schema"].as_str(),
                Some(numbered(*schema_no).as_str()),
                "id {id} on {}",
                r.url
            );
        }
    }
    for s in 0..4 {
        let path = format!("/subjects/{}-s{s}-value/versions", names.tag());
        let (_, expected) = regs[0].call(reqwest::Method::GET, &path, None, None).await;
        for r in &regs[1..] {
            assert_eq!(
                r.call(reqwest::Method::GET, &path, None, None).await.1,
                expected,
                "{path} on {}",
                r.url
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ids_are_never_reused_after_a_hard_delete_or_a_wiped_topic() {
    let _ = stack();
    let names = Names::new("registry_floor");
    let reg = TestRegistry::new(&names);
    let subject = format!("{}-value", names.tag());
    let p = reg.start().await;
    let id1 = reg.register(&subject, V1).await.unwrap();
    let id2 = reg.register(&subject, V2).await.unwrap();
    for permanent in ["false", "true"] {
        let (status, body) = reg
            .call(
                reqwest::Method::DELETE,
                &format!("/subjects/{subject}/versions/2?permanent={permanent}"),
                None,
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    drop(p);

    // the highest id was hard-deleted: a restarted registry still goes above it
    let p = reg.start().await;
    let id3 = reg
        .register(&format!("{}-other-value", names.tag()), &numbered(1))
        .await
        .unwrap();
    assert!(id1 < id2 && id2 < id3, "ids {id1}, {id2}, then {id3}");
    // records written with the deleted version's id still decode
    let (status, _) = reg
        .call(reqwest::Method::GET, &format!("/schemas/ids/{id2}"), None, None)
        .await;
    assert_eq!(status, 200);
    drop(p);

    // the topic is wiped: the ids in it are lost, but none of them is handed out again
    let results = admin()
        .delete_topics(&[&reg.topic], &AdminOptions::new())
        .await
        .expect("deleting the topic");
    for r in results {
        r.expect("the topic deleted");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let p = reg.start().await;
    let id4 = reg
        .register(&format!("{}-again-value", names.tag()), &numbered(2))
        .await
        .unwrap();
    assert!(id4 > id3, "after the wipe, id {id4} must be above {id3}");
    let ended = p.terminate(Duration::from_secs(20));
    assert!(
        ended.stderr.contains("records were lost") && ended.stderr.contains(&format!("ids up to {id3}")),
        "the lost ids are reported:\n{}",
        ended.stderr
    );
    let _ = std::fs::remove_dir_all(&reg.state_dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_topic_that_would_lose_records_or_has_lost_some_is_refused() {
    let cfg = stack();
    let names = Names::new("registry_refused");

    // created as older versions did: delete policy, 7 days
    let old = names.topic("_schemas_old");
    let topic = NewTopic::new(&old, 1, TopicReplication::Fixed(1)).set("retention.ms", "604800000");
    for r in admin().create_topics([&topic], &AdminOptions::new()).await.unwrap() {
        r.expect("the topic created");
    }
    let reg = TestRegistry::on_topic(old, names.tag());
    let ended = reg.spawn().wait(Duration::from_secs(30));
    assert_eq!(ended.status.code(), Some(1), "{}", ended.stderr);
    assert!(
        ended.stderr.contains("cleanup.policy=delete") && ended.stderr.contains("cleanup.policy=compact"),
        "{}",
        ended.stderr
    );
    assert!(
        ended.took < Duration::from_secs(15),
        "refused at once, not retried: {:?}",
        ended.took
    );

    // a log whose first records were deleted (Kafka refuses DeleteRecords on a topic that
    // is only compacted: this one also has the delete policy, with nothing expiring)
    let cut_topic = names.topic("_schemas_cut");
    let topic = NewTopic::new(&cut_topic, 1, TopicReplication::Fixed(1))
        .set("cleanup.policy", "compact,delete")
        .set("retention.ms", "-1");
    for r in admin().create_topics([&topic], &AdminOptions::new()).await.unwrap() {
        r.expect("the topic created");
    }
    let reg = TestRegistry::on_topic(cut_topic, names.tag());
    let p = reg.start().await;
    reg.register(&format!("{}-value", names.tag()), V1).await.unwrap();
    drop(p);
    let mut cut = TopicPartitionList::new();
    cut.add_partition_offset(&reg.topic, 0, Offset::Offset(1)).unwrap();
    let deleted = admin()
        .delete_records(&cut, &AdminOptions::new())
        .await
        .expect("deleting the first record");
    for e in deleted.elements() {
        e.error().expect("the broker deleted the first record");
    }
    let ended = reg.spawn().wait(Duration::from_secs(30));
    assert_eq!(ended.status.code(), Some(1), "{}", ended.stderr);
    assert!(ended.stderr.contains("begins at offset 1"), "{}", ended.stderr);
    let _ = cfg;
}

/// A self-signed certificate for 127.0.0.1 and its key, as PEM files in `dir`.
fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    use openssl::asn1::Asn1Time;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    use openssl::x509::extension::SubjectAlternativeName;
    use openssl::x509::{X509NameBuilder, X509};
    let key =
        PKey::from_ec_key(EcKey::generate(&EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap()).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "127.0.0.1").unwrap();
    let name = name.build();
    let mut cert = X509::builder().unwrap();
    cert.set_version(2).unwrap();
    cert.set_subject_name(&name).unwrap();
    cert.set_issuer_name(&name).unwrap();
    cert.set_pubkey(&key).unwrap();
    cert.set_not_before(&Asn1Time::days_from_now(0).unwrap()).unwrap();
    cert.set_not_after(&Asn1Time::days_from_now(2).unwrap()).unwrap();
    let san = SubjectAlternativeName::new()
        .ip("127.0.0.1")
        .build(&cert.x509v3_context(None, None))
        .unwrap();
    cert.append_extension(san).unwrap();
    cert.sign(&key, MessageDigest::sha256()).unwrap();
    let (cert_file, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_file, cert.build().to_pem().unwrap()).unwrap();
    std::fs::write(&key_file, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    (cert_file, key_file)
}

/// `chainflow registry hash-password` of `password`.
fn hash(password: &str) -> String {
    let out = chainflow(&["registry", "hash-password"]).output_with_input(&format!("{password}\n"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(hash.starts_with("$argon2id$") && !hash.contains(password), "{hash}");
    hash
}

#[tokio::test(flavor = "multi_thread")]
async fn users_roles_tls_limits_and_a_read_only_instance() {
    let _ = stack();
    let names = Names::new("registry_secure");
    let dir = std::env::temp_dir().join(format!("chainflow-tls-{}", names.tag()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = self_signed(&dir);
    let (alice, bob) = ("alice-918273645", "bob-5647382910");
    let reg = TestRegistry::new(&names)
        .https(&cert, &key)
        .with("CHAINFLOW_REGISTRY__USERS__ALICE__ROLE", "read-write")
        .with("CHAINFLOW_REGISTRY__USERS__ALICE__PASSWORD_HASH", &hash(alice))
        .with("CHAINFLOW_REGISTRY__USERS__BOB__ROLE", "read-only")
        .with("CHAINFLOW_REGISTRY__USERS__BOB__PASSWORD_HASH", &hash(bob))
        .with("CHAINFLOW_REGISTRY__MAX_REQUEST_BYTES", "8192")
        .with("CHAINFLOW_REGISTRY__MAX_SCHEMA_BYTES", "2048");
    let p = reg.start().await;
    let subject = format!("{}-value", names.tag());
    let register = format!("/subjects/{subject}/versions");
    let post = reqwest::Method::POST;

    // plain HTTP on the TLS port is not served
    assert!(
        reqwest::get(format!("{}/subjects", reg.url.replace("https://", "http://")))
            .await
            .map_or(true, |r| !r.status().is_success())
    );
    // no credentials, a wrong password: 401, with the scheme to use
    let resp = reg.client().get(format!("{}/subjects", reg.url)).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["www-authenticate"], "Basic realm=\"chainflow-registry\"");
    let (status, body) = reg
        .call(reqwest::Method::GET, "/subjects", None, Some(("alice", "nope")))
        .await;
    assert_eq!((status, body["error_code"].as_u64()), (401, Some(40101)), "{body}");
    // a read-only user reads, and may not register
    let v1 = Some(json!({ "schema": V1 }));
    let (status, body) = reg.call(post.clone(), &register, v1.clone(), Some(("bob", bob))).await;
    assert_eq!((status, body["error_code"].as_u64()), (403, Some(40301)), "{body}");
    let (status, _) = reg
        .call(reqwest::Method::GET, "/subjects", None, Some(("bob", bob)))
        .await;
    assert_eq!(status, 200);
    // a read-write user registers
    let (status, body) = reg
        .call(post.clone(), &register, v1.clone(), Some(("alice", alice)))
        .await;
    assert_eq!(status, 200, "{body}");
    let id = body["id"].as_u64().unwrap();
    let (_, body) = reg
        .call(post.clone(), &format!("/subjects/{subject}"), v1, Some(("bob", bob)))
        .await;
    assert_eq!(body["id"].as_u64(), Some(id), "a lookup is a read: {body}");
    // limits: a schema over registry.max_schema_bytes, a body over registry.max_request_bytes
    let fields: Vec<String> = (0..60)
        .map(|i| format!(r#"{{"name":"field_number_{i}","type":"long"}}"#))
        .collect();
    let big = format!(r#"{{"type":"record","name":"Big","fields":[{}]}}"#, fields.join(","));
    assert!(big.len() > 2048 && big.len() < 8000);
    let (status, body) = reg
        .call(
            post.clone(),
            &register,
            Some(json!({ "schema": big })),
            Some(("alice", alice)),
        )
        .await;
    assert_eq!(status, 413, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("registry.max_schema_bytes"),
        "{body}"
    );
    let huge = json!({ "schema": V1, "padding": "x".repeat(10_000) });
    let (status, body) = reg
        .call(post.clone(), &register, Some(huge), Some(("alice", alice)))
        .await;
    assert_eq!(status, 413, "{body}");
    // the process's own routes need no credentials
    for path in ["/healthz", "/metrics"] {
        let resp = reg.client().get(format!("{}{path}", reg.url)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
    }

    // Confluent's Python client, authenticated, over HTTPS
    python_client(
        &reg.url,
        names.tag(),
        &[&format!("alice:{alice}"), &cert.display().to_string()],
    );

    // the stages' own client: basic auth, and the CA of registry.ca_file
    let section = chainflow_config::RegistryConfig {
        url: reg.url.clone(),
        username: "alice".into(),
        password: chainflow_config::Secret::new(alice),
        ca_file: cert.display().to_string(),
        ..chainflow_config::RegistryConfig::default()
    };
    let codec = chainflow_codec::Codec::new(chainflow_codec::registry_settings(&section).unwrap());
    let tick = chainflow_contract::UnderlyingTick {
        product: names.tag().into(),
        price: 21_500.0,
        volume: 1,
        event_time: 1,
        seq: 1,
    };
    let bytes = codec
        .encode(&tick)
        .await
        .expect("encoding registers the schema over TLS with basic auth");
    let back: chainflow_contract::UnderlyingTick = codec.decode(&bytes).await.unwrap();
    assert_eq!(back, tick);

    // a read-only instance on the same topic serves what the other wrote, and refuses changes
    let ro = reg.sibling().with("CHAINFLOW_REGISTRY__READ_ONLY", "true");
    let _ro = ro.start().await;
    let (status, body) = ro
        .call(reqwest::Method::GET, &format!("/schemas/ids/{id}"), None, None)
        .await;
    assert_eq!((status, body["schema"].as_str()), (200, Some(V1)), "{body}");
    let (status, body) = ro.call(post, &register, Some(json!({ "schema": V2 })), None).await;
    assert_eq!((status, body["error_code"].as_u64()), (422, Some(42205)), "{body}");
    let stderr = p.terminate(Duration::from_secs(20)).stderr;
    for secret in [alice, bob] {
        assert!(!stderr.contains(secret), "a password was logged:\n{stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// How many records `topic` (one partition) holds, read from its first offset to its end.
async fn records_in(topic: &str) -> usize {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let reader: std::sync::Arc<BaseConsumer> = std::sync::Arc::new(
        chainflow_kafka::consumer_config(&stack().kafka, "test-registry-compaction")
            .create()
            .expect("a consumer"),
    );
    let (_, high) = chainflow_kafka::blocking::fetch_watermarks(&reader, topic, 0, Duration::from_secs(10))
        .await
        .expect("watermarks");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning).unwrap();
    reader.assign(&tpl).unwrap();
    let (mut count, deadline) = (0, Instant::now() + Duration::from_secs(30));
    while Instant::now() < deadline {
        match reader.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                count += 1;
                if rdkafka::Message::offset(&m) + 1 >= high {
                    break;
                }
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {}
        }
    }
    count
}

#[tokio::test(flavor = "multi_thread")]
async fn after_the_log_cleaner_compacts_the_topic_a_restarted_registry_serves_every_id_the_same() {
    let names = Names::new("registry_compacted");
    // compacted as `_schemas` is, with segments that roll at once and a cleaner that takes
    // any dirty segment: Apache Kafka's log cleaner rewrites the log within seconds
    let compacted = names.topic("_schemas_compacted");
    let topic = NewTopic::new(&compacted, 1, TopicReplication::Fixed(1))
        .set("cleanup.policy", "compact")
        .set("retention.ms", "-1")
        .set("segment.ms", "100")
        .set("min.cleanable.dirty.ratio", "0.01")
        .set("delete.retention.ms", "100");
    for r in admin().create_topics([&topic], &AdminOptions::new()).await.unwrap() {
        r.expect("the topic created");
    }
    let reg = TestRegistry::on_topic(compacted.clone(), names.tag());
    let first = reg.start().await;
    let mut ids = Vec::new();
    for i in 0..6 {
        let subject = format!("{}-{i}-value", names.tag());
        let v2 = numbered(i).replace(r"}]}", r#"},{"name":"g","type":["null","long"],"default":null}]}"#);
        ids.push(reg.register(&subject, &numbered(i)).await.unwrap());
        ids.push(reg.register(&subject, &v2).await.unwrap());
    }
    // records the cleaner may drop: a subject's level set again and again, a version
    // soft-deleted (its record rewritten), a subject deleted for good (tombstones)
    let levels = ["BACKWARD", "FORWARD", "FULL", "NONE", "FULL_TRANSITIVE"];
    let configured = format!("/config/{}-0-value", names.tag());
    for level in levels.iter().cycle().take(20) {
        let (code, _) = reg
            .call(
                reqwest::Method::PUT,
                &configured,
                Some(json!({ "compatibility": level })),
                None,
            )
            .await;
        assert_eq!(code, 200);
    }
    let soft = format!("/subjects/{}-1-value/versions/2", names.tag());
    assert_eq!(reg.call(reqwest::Method::DELETE, &soft, None, None).await.0, 200);
    let hard = format!("/subjects/{}-2-value", names.tag());
    assert_eq!(reg.call(reqwest::Method::DELETE, &hard, None, None).await.0, 200);
    assert_eq!(
        reg.call(reqwest::Method::DELETE, &format!("{hard}?permanent=true"), None, None)
            .await
            .0,
        200
    );
    let written = records_in(&compacted).await;
    // later writes roll the segments the cleaner then takes, until it has
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut level = levels.iter().cycle();
    let kept = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let body = json!({ "compatibility": level.next().unwrap() });
        reg.call(
            reqwest::Method::PUT,
            &format!("/config/{}-3-value", names.tag()),
            Some(body),
            None,
        )
        .await;
        let kept = records_in(&compacted).await;
        if kept < written {
            break kept;
        }
        assert!(
            Instant::now() < deadline,
            "the log cleaner did not compact {compacted}: {kept} of {written} records"
        );
    };
    let (_, config) = reg.call(reqwest::Method::GET, &configured, None, None).await;
    let mut served = BTreeMap::new();
    for id in &ids {
        served.insert(
            *id,
            reg.call(reqwest::Method::GET, &format!("/schemas/ids/{id}"), None, None)
                .await,
        );
    }
    drop(first);
    // a new instance replays the compacted log
    let again = reg.sibling();
    let _second = again.start().await;
    for (id, before) in &served {
        assert_eq!(before.0, 200, "id {id} before the restart: {}", before.1);
        let after = again
            .call(reqwest::Method::GET, &format!("/schemas/ids/{id}"), None, None)
            .await;
        assert_eq!(
            &after, before,
            "id {id} serves something else after the compaction and the restart"
        );
    }
    assert_eq!(
        again.call(reqwest::Method::GET, &configured, None, None).await.1,
        config
    );
    eprintln!(
        "compacted {written} records to {kept}; {} ids served alike",
        served.len()
    );
    let _ = std::fs::remove_dir_all(&reg.state_dir);
    let _ = std::fs::remove_dir_all(&again.state_dir);
}
