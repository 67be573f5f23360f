//! The registry's state, rebuilt from [`Entry`] records in log order, and the planning of
//! every change: an operation checks the state and returns the entries to write, which
//! take effect when the instance reads them back from the `_schemas` topic.
//!
//! New ids are agreed through claims, resolved in log order by one rule that every
//! instance applies alike (see [`Store::apply`]): the first claim of a subject's version
//! wins it, and a new id is won only by a claim above every id before it in the log, for
//! a schema that has no id yet. A losing claim changes nothing; its instance reads on and
//! plans again.

use crate::error::RegistryError;
use crate::log::{Claim, Entry, SchemaValue};
use apache_avro::Schema;
use chainflow_contract::compat::Level;
use std::collections::{BTreeMap, HashMap};

/// A schema known by id.
#[derive(Debug, Clone)]
pub struct StoredSchema {
    /// Text as first registered.
    pub raw: String,
    /// Parsed form.
    pub parsed: Schema,
    /// Canonical text (see [`parse`]).
    canonical: String,
}

/// One version of a subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    /// Global schema id.
    pub id: u32,
    /// Soft-deleted.
    pub deleted: bool,
}

/// A version as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectVersion {
    /// Subject.
    pub subject: String,
    /// Version.
    pub version: u32,
    /// Schema id.
    pub id: u32,
    /// Schema text.
    pub schema: String,
}

/// What registering a schema under a subject takes.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// The subject already has this schema, with this id.
    Existing(u32),
    /// Another instance's claim of a version of the subject is being completed: read on
    /// and plan again.
    Wait,
    /// A claim to write (its `claimant` to be filled in).
    Claim(Claim),
}

/// What applying one record did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// A claim that won its id and version.
    Won,
    /// A claim that lost, or a record that contradicts the state, with the reason; the
    /// state is unchanged.
    Refused(String),
    /// Any other record.
    Done,
}

/// The whole registry state.
#[derive(Debug)]
pub struct Store {
    /// Every id ever assigned (claims, and `SCHEMA` records of logs without claims).
    schemas: BTreeMap<u32, StoredSchema>,
    by_canonical: HashMap<String, u32>,
    /// Versions by subject, from `SCHEMA` records and tombstones.
    subjects: BTreeMap<String, BTreeMap<u32, Version>>,
    /// The highest id in the log.
    highest_id: u32,
    /// The highest version claimed or stored, by subject: versions are never reused.
    highest_version: BTreeMap<String, u32>,
    /// Won claims whose `SCHEMA` record has not been read yet: subject → (version, id).
    pending: BTreeMap<String, (u32, u32)>,
    /// New ids go above this too: the highest id this registry ever served (state dir).
    floor: u32,
    /// The level of subjects without their own, while the log sets none (`registry.compatibility`).
    default_level: Level,
    global: Level,
    subject_levels: BTreeMap<String, Level>,
}

impl Default for Store {
    fn default() -> Self {
        Self {
            schemas: BTreeMap::new(),
            by_canonical: HashMap::new(),
            subjects: BTreeMap::new(),
            highest_id: 0,
            highest_version: BTreeMap::new(),
            pending: BTreeMap::new(),
            floor: 0,
            default_level: Level::Backward,
            global: Level::Backward,
            subject_levels: BTreeMap::new(),
        }
    }
}

/// Parses an Avro schema and returns it with its canonical text (the parsed form printed
/// back as JSON: white space, key order and defaults filled in do not matter).
pub fn parse(raw: &str) -> Result<(Schema, String), RegistryError> {
    let parsed = Schema::parse_str(raw).map_err(RegistryError::invalid_schema)?;
    let canonical = serde_json::to_string(&parsed).map_err(RegistryError::invalid_schema)?;
    Ok((parsed, canonical))
}

impl Store {
    /// An empty state whose global level, until the log sets one, is `level` (Confluent's
    /// default is BACKWARD; chainflow's `registry.compatibility` is FULL).
    pub fn with_default_level(level: Level) -> Self {
        Self {
            default_level: level,
            global: level,
            ..Self::default()
        }
    }

    /// Applies one record of the `_schemas` topic, in log order. A claim wins when its
    /// version is above every version of its subject so far, and its id is either the id
    /// its schema already has, or, for a schema without one, above every id so far.
    /// An error is a record that cannot be read at all.
    pub fn apply(&mut self, entry: &Entry) -> Result<Applied, String> {
        match entry {
            Entry::Claim(c) => return Ok(self.claim(c)),
            Entry::Schema(v) => return self.schema_record(v),
            Entry::SchemaTombstone { subject, version } => {
                if let Some(versions) = self.subjects.get_mut(subject) {
                    versions.remove(version);
                    if versions.is_empty() {
                        self.subjects.remove(subject);
                        self.subject_levels.remove(subject);
                    }
                }
            }
            Entry::Config { subject: None, level } => self.global = level.unwrap_or(self.default_level),
            Entry::Config {
                subject: Some(s),
                level: Some(l),
            } => {
                self.subject_levels.insert(s.clone(), *l);
            }
            Entry::Config {
                subject: Some(s),
                level: None,
            } => {
                self.subject_levels.remove(s);
            }
        }
        Ok(Applied::Done)
    }

    /// Applies a `SCHEMA` record: a version of a subject (written after a won claim, or by
    /// a registry without claims), or its soft deletion.
    fn schema_record(&mut self, v: &SchemaValue) -> Result<Applied, String> {
        let (parsed, canonical) = parse(&v.schema).map_err(|e| e.message)?;
        match self.schemas.get(&v.id) {
            Some(known) if known.canonical != canonical => {
                return Ok(Applied::Refused(format!(
                    "version {} of {} names id {}, which is another schema",
                    v.version, v.subject, v.id
                )))
            }
            Some(_) => {}
            None => self.add_schema(v.id, &v.schema, parsed, canonical),
        }
        self.subjects.entry(v.subject.clone()).or_default().insert(
            v.version,
            Version {
                id: v.id,
                deleted: v.deleted,
            },
        );
        let highest = self.highest_version.entry(v.subject.clone()).or_default();
        *highest = (*highest).max(v.version);
        if self.pending.get(&v.subject).is_some_and(|(n, _)| *n == v.version) {
            self.pending.remove(&v.subject);
        }
        Ok(Applied::Done)
    }

    /// Resolves a claim (the rule of [`Store::apply`]).
    fn claim(&mut self, c: &Claim) -> Applied {
        let (parsed, canonical) = match parse(&c.schema) {
            Ok(p) => p,
            Err(e) => return Applied::Refused(e.message),
        };
        let highest_version = self.highest_version.get(&c.subject).copied().unwrap_or(0);
        if c.version <= highest_version {
            return Applied::Refused(format!(
                "version {} of {} is taken (the highest is {highest_version})",
                c.version, c.subject
            ));
        }
        match (self.schemas.get(&c.id), self.by_canonical.get(&canonical)) {
            (Some(known), _) if known.canonical == canonical => {}
            (Some(_), _) => return Applied::Refused(format!("id {} is another schema's", c.id)),
            (None, Some(id)) => return Applied::Refused(format!("the schema already has id {id}")),
            (None, None) if c.id <= self.highest_id => {
                return Applied::Refused(format!(
                    "id {} is not above the highest id so far, {}",
                    c.id, self.highest_id
                ))
            }
            (None, None) => self.add_schema(c.id, &c.schema, parsed, canonical),
        }
        self.highest_version.insert(c.subject.clone(), c.version);
        self.pending.insert(c.subject.clone(), (c.version, c.id));
        Applied::Won
    }

    fn add_schema(&mut self, id: u32, raw: &str, parsed: Schema, canonical: String) {
        self.by_canonical.entry(canonical.clone()).or_insert(id);
        self.schemas.insert(
            id,
            StoredSchema {
                raw: raw.to_string(),
                parsed,
                canonical,
            },
        );
        self.highest_id = self.highest_id.max(id);
    }

    /// The highest id in the log.
    pub fn highest_id(&self) -> u32 {
        self.highest_id
    }

    /// New ids go above `floor` too (the highest id ever served, kept on disk).
    pub fn raise_floor(&mut self, floor: u32) {
        self.floor = self.floor.max(floor);
    }

    /// The schema with global id `id`.
    pub fn schema(&self, id: u32) -> Option<&StoredSchema> {
        self.schemas.get(&id)
    }

    /// Subjects with at least one live version (or any version, with `deleted`).
    pub fn subjects(&self, deleted: bool) -> Vec<String> {
        self.subjects
            .iter()
            .filter(|(_, v)| deleted || v.values().any(|x| !x.deleted))
            .map(|(s, _)| s.clone())
            .collect()
    }

    fn versions_of(&self, subject: &str, deleted: bool) -> Result<Vec<(u32, Version)>, RegistryError> {
        let versions = self
            .subjects
            .get(subject)
            .ok_or_else(|| RegistryError::subject_not_found(subject))?;
        let live: Vec<(u32, Version)> = versions
            .iter()
            .filter(|(_, v)| deleted || !v.deleted)
            .map(|(n, v)| (*n, *v))
            .collect();
        if live.is_empty() && !deleted {
            return Err(RegistryError::subject_not_found(subject));
        }
        Ok(live)
    }

    /// Version numbers of a subject.
    pub fn versions(&self, subject: &str, deleted: bool) -> Result<Vec<u32>, RegistryError> {
        Ok(self
            .versions_of(subject, deleted)?
            .into_iter()
            .map(|(n, _)| n)
            .collect())
    }

    /// Resolves `latest`, `-1` or a number to an existing version.
    pub fn version(&self, subject: &str, spec: &str, deleted: bool) -> Result<SubjectVersion, RegistryError> {
        let versions = self.versions_of(subject, deleted)?;
        let wanted = match spec {
            "latest" | "-1" => versions
                .last()
                .map(|(n, _)| *n)
                .ok_or_else(|| RegistryError::subject_not_found(subject))?,
            other => match other.parse::<u32>() {
                Ok(n) if n >= 1 && i32::try_from(n).is_ok() => n,
                _ => return Err(RegistryError::invalid_version(other)),
            },
        };
        let (_, v) = versions
            .iter()
            .find(|(n, _)| *n == wanted)
            .ok_or_else(|| RegistryError::version_not_found(wanted))?;
        Ok(self.subject_version(subject, wanted, v.id))
    }

    fn subject_version(&self, subject: &str, version: u32, id: u32) -> SubjectVersion {
        SubjectVersion {
            subject: subject.to_string(),
            version,
            id,
            schema: self.schemas.get(&id).map(|s| s.raw.clone()).unwrap_or_default(),
        }
    }

    /// The version of `subject` that holds schema `raw`.
    pub fn lookup(&self, subject: &str, raw: &str, deleted: bool) -> Result<SubjectVersion, RegistryError> {
        let (_, canonical) = parse(raw)?;
        let versions = self.versions_of(subject, deleted)?;
        let id = self.by_canonical.get(&canonical).copied();
        versions
            .iter()
            .rev()
            .find(|(_, v)| Some(v.id) == id)
            .map(|(n, v)| self.subject_version(subject, *n, v.id))
            .ok_or_else(|| RegistryError::schema_not_found(""))
    }

    /// Subjects and versions that use schema `id`.
    pub fn usages(&self, id: u32) -> Vec<(String, u32)> {
        self.subjects
            .iter()
            .flat_map(|(s, vs)| {
                vs.iter()
                    .filter(|(_, v)| v.id == id && !v.deleted)
                    .map(move |(n, _)| (s.clone(), *n))
            })
            .collect()
    }

    /// The level in force for `subject`: its own, else the global one.
    pub fn level(&self, subject: Option<&str>) -> Level {
        subject
            .and_then(|s| self.subject_levels.get(s))
            .copied()
            .unwrap_or(self.global)
    }

    /// The subject's own level, if one is set.
    pub fn subject_level(&self, subject: &str) -> Option<Level> {
        self.subject_levels.get(subject).copied()
    }

    /// Checks `raw` against the live versions of `subject` the level asks for
    /// (`against`: one version, or `None` for latest/all per the level).
    pub fn check(&self, subject: &str, new: &Schema, against: Option<u32>) -> Result<Option<String>, RegistryError> {
        let level = self.level(Some(subject));
        let Ok(live) = self.versions_of(subject, false) else {
            return Ok(None);
        };
        let targets: Vec<u32> = match against {
            Some(n) => vec![n],
            None if level.transitive() => live.iter().map(|(n, _)| *n).collect(),
            None => live.last().map(|(n, _)| vec![*n]).unwrap_or_default(),
        };
        for n in targets {
            let (_, v) = live
                .iter()
                .find(|(m, _)| *m == n)
                .ok_or_else(|| RegistryError::version_not_found(n))?;
            let old = &self.schemas[&v.id].parsed;
            if let Some(why) = level.violation(old, new) {
                return Ok(Some(format!("version {n}: {why}")));
            }
        }
        Ok(None)
    }

    /// Plans registering `raw` under `subject`: the same schema again gives the same id;
    /// the same schema under another subject gets the id it already has; a new schema gets
    /// an id above every id in the log and the floor. While another instance completes a
    /// version of the subject, the plan is to wait, unless `no_wait`.
    pub fn register(&self, subject: &str, raw: &str, no_wait: bool) -> Result<Plan, RegistryError> {
        let (parsed, canonical) = parse(raw)?;
        let existing_id = self.by_canonical.get(&canonical).copied();
        if let Some(id) = existing_id {
            let live = self.subjects.get(subject).into_iter().flatten();
            if live.clone().any(|(_, v)| v.id == id && !v.deleted) {
                return Ok(Plan::Existing(id));
            }
        }
        if !no_wait && self.pending.contains_key(subject) {
            return Ok(Plan::Wait);
        }
        if let Some(why) = self.check(subject, &parsed, None)? {
            return Err(RegistryError::incompatible(subject, &why));
        }
        let id = existing_id.unwrap_or_else(|| self.highest_id.max(self.floor) + 1);
        let version = self.highest_version.get(subject).map_or(1, |m| m + 1);
        let schema = existing_id.map_or_else(|| raw.to_string(), |id| self.schemas[&id].raw.clone());
        Ok(Plan::Claim(Claim {
            claimant: String::new(),
            id,
            subject: subject.into(),
            version,
            schema,
        }))
    }

    /// The `SCHEMA` record that completes a won claim.
    pub fn completion(claim: &Claim) -> Entry {
        Entry::Schema(SchemaValue {
            subject: claim.subject.clone(),
            version: claim.version,
            id: claim.id,
            schema: claim.schema.clone(),
            deleted: false,
        })
    }

    /// Plans deleting a whole subject; returns the versions affected and the entries.
    pub fn delete_subject(&self, subject: &str, permanent: bool) -> Result<(Vec<u32>, Vec<Entry>), RegistryError> {
        let all = self.versions_of(subject, true)?;
        let live: Vec<u32> = all.iter().filter(|(_, v)| !v.deleted).map(|(n, _)| *n).collect();
        if permanent {
            if !live.is_empty() {
                return Err(RegistryError::subject_not_soft_deleted(subject));
            }
            let entries = all
                .iter()
                .map(|(n, _)| Entry::SchemaTombstone {
                    subject: subject.into(),
                    version: *n,
                })
                .chain(self.subject_levels.contains_key(subject).then(|| Entry::Config {
                    subject: Some(subject.into()),
                    level: None,
                }))
                .collect();
            return Ok((all.iter().map(|(n, _)| *n).collect(), entries));
        }
        if live.is_empty() {
            return Err(RegistryError::subject_soft_deleted(subject));
        }
        let entries = all
            .iter()
            .filter(|(_, v)| !v.deleted)
            .map(|(n, v)| self.soft_deleted(subject, *n, v.id))
            .collect();
        Ok((live, entries))
    }

    fn soft_deleted(&self, subject: &str, version: u32, id: u32) -> Entry {
        Entry::Schema(SchemaValue {
            subject: subject.into(),
            version,
            id,
            schema: self.schemas[&id].raw.clone(),
            deleted: true,
        })
    }

    /// Plans deleting one version.
    pub fn delete_version(&self, subject: &str, spec: &str, permanent: bool) -> Result<(u32, Entry), RegistryError> {
        let sv = self.version(subject, spec, permanent)?;
        let deleted = self.subjects[subject][&sv.version].deleted;
        match (permanent, deleted) {
            (true, false) => Err(RegistryError::version_not_soft_deleted(subject, sv.version)),
            (true, true) => Ok((
                sv.version,
                Entry::SchemaTombstone {
                    subject: subject.into(),
                    version: sv.version,
                },
            )),
            (false, true) => Err(RegistryError::version_soft_deleted(subject, sv.version)),
            (false, false) => Ok((sv.version, self.soft_deleted(subject, sv.version, sv.id))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"long"}]}"#;
    const V2: &str = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"long"},{"name":"b","type":["null","string"],"default":null}]}"#;
    const BAD: &str = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"}]}"#;

    /// Registers as one instance does: claims, reads the claim back, completes it.
    fn register(store: &mut Store, subject: &str, raw: &str) -> Result<u32, RegistryError> {
        match store.register(subject, raw, false)? {
            Plan::Existing(id) => Ok(id),
            Plan::Wait => panic!("nothing is pending in a single-instance test"),
            Plan::Claim(c) => {
                assert_eq!(store.apply(&Entry::Claim(c.clone())).unwrap(), Applied::Won);
                store.apply(&Store::completion(&c)).unwrap();
                Ok(c.id)
            }
        }
    }

    fn claim(store: &Store, subject: &str, raw: &str, claimant: &str) -> Claim {
        match store.register(subject, raw, false).unwrap() {
            Plan::Claim(mut c) => {
                claimant.clone_into(&mut c.claimant);
                c
            }
            other => panic!("expected a claim, got {other:?}"),
        }
    }

    #[test]
    fn concurrent_claims_are_resolved_in_log_order() {
        // two instances plan from the same state, then both claims reach the log
        let mut log = Store::default();
        let a = claim(&log, "a-value", V1, "A/1");
        let b = claim(&log, "b-value", V2, "B/1");
        assert_eq!((a.id, b.id), (1, 1));
        assert_eq!(log.apply(&Entry::Claim(a.clone())).unwrap(), Applied::Won);
        assert!(matches!(log.apply(&Entry::Claim(b)).unwrap(), Applied::Refused(_)));
        // B reads on and plans again: a new id above A's
        let b = claim(&log, "b-value", V2, "B/2");
        assert_eq!(b.id, 2);
        assert_eq!(log.apply(&Entry::Claim(b)).unwrap(), Applied::Won);
        // the same schema claimed under another subject at once: both win, one id
        let mut log2 = Store::default();
        let a = claim(&log2, "a-value", V1, "A/1");
        let c = claim(&log2, "c-value", V1, "C/1");
        assert_eq!((a.id, c.id), (1, 1));
        assert_eq!(log2.apply(&Entry::Claim(a)).unwrap(), Applied::Won);
        assert_eq!(log2.apply(&Entry::Claim(c)).unwrap(), Applied::Won);
        // but a new schema cannot take an id another one won
        let d = Claim {
            claimant: "D/1".into(),
            id: 1,
            subject: "d-value".into(),
            version: 1,
            schema: V2.into(),
        };
        assert!(matches!(log2.apply(&Entry::Claim(d)).unwrap(), Applied::Refused(_)));
        // while A's version of a-value is pending, a second registration there waits
        assert_eq!(log2.register("a-value", V2, false).unwrap(), Plan::Wait);
        assert!(matches!(log2.register("a-value", V2, true).unwrap(), Plan::Claim(_)));
    }

    #[test]
    fn the_same_version_claimed_twice_goes_to_the_first() {
        let mut log = Store::default();
        register(&mut log, "a-value", V1).unwrap();
        let x = claim(&log, "a-value", V2, "X/1");
        let y = claim(&log, "a-value", V2, "Y/1");
        assert_eq!(log.apply(&Entry::Claim(x.clone())).unwrap(), Applied::Won);
        assert!(matches!(log.apply(&Entry::Claim(y)).unwrap(), Applied::Refused(_)));
        log.apply(&Store::completion(&x)).unwrap();
        // Y plans again and finds its schema there
        assert_eq!(log.register("a-value", V2, false).unwrap(), Plan::Existing(x.id));
    }

    #[test]
    fn ids_stay_above_the_floor_and_above_hard_deleted_ones() {
        let mut s = Store::default();
        s.raise_floor(41);
        assert_eq!(register(&mut s, "a-value", V1).unwrap(), 42);
        let v2 = register(&mut s, "a-value", V2).unwrap();
        assert_eq!(v2, 43);
        for permanent in [false, true] {
            let (_, e) = s.delete_version("a-value", "2", permanent).unwrap();
            s.apply(&e).unwrap();
        }
        // the hard-deleted schema keeps its id: a new schema gets the next one
        assert_eq!(register(&mut s, "b-value", BAD).unwrap(), 44);
        // and versions are not reused either
        assert_eq!(
            s.register("a-value", V2, false).unwrap(),
            Plan::Claim(Claim {
                claimant: String::new(),
                id: 43,
                subject: "a-value".into(),
                version: 3,
                schema: V2.into(),
            })
        );
    }

    #[test]
    fn same_schema_same_id_and_global_ids_across_subjects() {
        let mut s = Store::default();
        let a = register(&mut s, "a-value", V1).unwrap();
        // whitespace and key order do not make a new schema
        let respelled = r#"{ "name": "R", "type": "record", "fields": [ {"type": "long", "name": "a"} ] }"#;
        assert_eq!(register(&mut s, "a-value", respelled).unwrap(), a);
        assert_eq!(s.versions("a-value", false).unwrap(), vec![1]);
        assert_eq!(register(&mut s, "b-value", V1).unwrap(), a);
        let v2 = register(&mut s, "a-value", V2).unwrap();
        assert_ne!(v2, a);
        assert_eq!(s.version("a-value", "latest", false).unwrap().version, 2);
    }

    #[test]
    fn incompatible_schema_is_refused_with_409() {
        let mut s = Store::default();
        register(&mut s, "a-value", V1).unwrap();
        let e = register(&mut s, "a-value", BAD).unwrap_err();
        assert_eq!((e.status, e.code), (409, 409));
        s.apply(&Entry::Config {
            subject: Some("a-value".into()),
            level: Some(Level::None),
        })
        .unwrap();
        assert!(register(&mut s, "a-value", BAD).is_ok());
    }

    #[test]
    fn errors_carry_confluent_codes() {
        let mut s = Store::default();
        assert_eq!(s.version("nope", "latest", false).unwrap_err().code, 40401);
        register(&mut s, "a-value", V1).unwrap();
        assert_eq!(s.version("a-value", "7", false).unwrap_err().code, 40402);
        assert_eq!(s.version("a-value", "x", false).unwrap_err().code, 42202);
        assert_eq!(s.lookup("a-value", V2, false).unwrap_err().code, 40403);
        assert_eq!(s.register("a-value", "{nope", false).unwrap_err().code, 42201);
    }

    #[test]
    fn soft_then_permanent_delete() {
        let mut s = Store::default();
        let id = register(&mut s, "a-value", V1).unwrap();
        assert_eq!(s.delete_subject("a-value", true).unwrap_err().code, 40405);
        let (versions, entries) = s.delete_subject("a-value", false).unwrap();
        assert_eq!(versions, vec![1]);
        for e in &entries {
            s.apply(e).unwrap();
        }
        assert!(s.subjects(false).is_empty());
        assert_eq!(s.subjects(true), vec!["a-value".to_string()]);
        assert_eq!(s.delete_subject("a-value", false).unwrap_err().code, 40404);
        // re-registering after a soft delete continues the version numbers
        assert_eq!(register(&mut s, "a-value", V1).unwrap(), id);
        assert_eq!(s.versions("a-value", false).unwrap(), vec![2]);
        let (_, entries) = s.delete_subject("a-value", false).unwrap();
        for e in &entries {
            s.apply(e).unwrap();
        }
        let (_, entries) = s.delete_subject("a-value", true).unwrap();
        for e in &entries {
            s.apply(e).unwrap();
        }
        assert!(s.subjects(true).is_empty());
        // ids are never reused, and the schema stays readable by id
        assert!(s.schema(id).is_some());
    }

    #[test]
    fn replaying_the_entries_rebuilds_the_same_state() {
        let mut s = Store::default();
        let mut log = Vec::new();
        for (subject, raw) in [("a-value", V1), ("b-value", V2), ("a-value", V2)] {
            if let Plan::Claim(c) = s.register(subject, raw, false).unwrap() {
                for e in [Entry::Claim(c.clone()), Store::completion(&c)] {
                    s.apply(&e).unwrap();
                    log.push(e);
                }
            }
        }
        let mut replayed = Store::default();
        for e in &log {
            replayed.apply(e).unwrap();
        }
        assert_eq!(
            replayed.version("a-value", "latest", false),
            s.version("a-value", "latest", false)
        );
        assert_eq!(
            replayed.version("b-value", "1", false),
            s.version("b-value", "1", false)
        );
        assert_eq!(replayed.highest_id(), s.highest_id());
    }

    #[test]
    fn logs_without_claims_are_read_as_before() {
        // a topic written before claims existed (or by another registry): SCHEMA records
        let mut s = Store::default();
        for (version, id, raw) in [(1, 1, V1), (2, 2, V2)] {
            s.apply(&Entry::Schema(SchemaValue {
                subject: "a-value".into(),
                version,
                id,
                schema: raw.into(),
                deleted: false,
            }))
            .unwrap();
        }
        assert_eq!(s.highest_id(), 2);
        assert_eq!(register(&mut s, "b-value", BAD).unwrap(), 3);
        // a record naming an id that is another schema's is refused, not applied
        let clash = Entry::Schema(SchemaValue {
            subject: "c-value".into(),
            version: 1,
            id: 1,
            schema: BAD.into(),
            deleted: false,
        });
        assert!(matches!(s.apply(&clash).unwrap(), Applied::Refused(_)));
        assert!(s.version("c-value", "1", false).is_err());
    }
}
