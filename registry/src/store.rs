//! The registry's state, rebuilt from [`Entry`] records, and the planning of every
//! change: an operation checks the state and returns the entries to write, which are
//! applied only once the `_schemas` topic has acknowledged them.

use crate::compat::Level;
use crate::error::RegistryError;
use crate::log::{Entry, SchemaValue};
use apache_avro::Schema;
use std::collections::{BTreeMap, HashMap};

/// A schema known by id.
#[derive(Debug, Clone)]
pub struct StoredSchema {
    /// Text as first registered.
    pub raw: String,
    /// Parsed form.
    pub parsed: Schema,
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

/// Outcome of a registration.
#[derive(Debug, Clone, PartialEq)]
pub enum Registration {
    /// The subject already has this schema.
    Existing(u32),
    /// A new version: write the entry, then answer with the id.
    New(u32, Entry),
}

/// The whole registry state.
#[derive(Debug)]
pub struct Store {
    schemas: BTreeMap<u32, StoredSchema>,
    by_canonical: HashMap<String, u32>,
    subjects: BTreeMap<String, BTreeMap<u32, Version>>,
    global: Level,
    subject_levels: BTreeMap<String, Level>,
}

impl Default for Store {
    fn default() -> Self {
        Self {
            schemas: BTreeMap::new(),
            by_canonical: HashMap::new(),
            subjects: BTreeMap::new(),
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
    /// Applies one record of the `_schemas` topic.
    pub fn apply(&mut self, entry: &Entry) -> Result<(), String> {
        match entry {
            Entry::Schema(v) => {
                if !self.schemas.contains_key(&v.id) {
                    let (parsed, canonical) = parse(&v.schema).map_err(|e| e.message)?;
                    self.by_canonical.entry(canonical).or_insert(v.id);
                    self.schemas.insert(
                        v.id,
                        StoredSchema {
                            raw: v.schema.clone(),
                            parsed,
                        },
                    );
                }
                self.subjects.entry(v.subject.clone()).or_default().insert(
                    v.version,
                    Version {
                        id: v.id,
                        deleted: v.deleted,
                    },
                );
            }
            Entry::SchemaTombstone { subject, version } => {
                if let Some(versions) = self.subjects.get_mut(subject) {
                    versions.remove(version);
                    if versions.is_empty() {
                        self.subjects.remove(subject);
                        self.subject_levels.remove(subject);
                    }
                }
            }
            Entry::Config { subject: None, level } => self.global = level.unwrap_or(Level::Backward),
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
        Ok(())
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
    /// the same schema under another subject gets the id it already has.
    pub fn register(&self, subject: &str, raw: &str) -> Result<Registration, RegistryError> {
        let (parsed, canonical) = parse(raw)?;
        let existing_id = self.by_canonical.get(&canonical).copied();
        if let Some(id) = existing_id {
            let live = self.subjects.get(subject).into_iter().flatten();
            if live.clone().any(|(_, v)| v.id == id && !v.deleted) {
                return Ok(Registration::Existing(id));
            }
        }
        if let Some(why) = self.check(subject, &parsed, None)? {
            return Err(RegistryError::incompatible(subject, &why));
        }
        let id = existing_id.unwrap_or_else(|| self.schemas.keys().next_back().map_or(1, |m| m + 1));
        let version = self
            .subjects
            .get(subject)
            .and_then(|v| v.keys().next_back())
            .map_or(1, |m| m + 1);
        let schema = existing_id.map_or_else(|| raw.to_string(), |id| self.schemas[&id].raw.clone());
        Ok(Registration::New(
            id,
            Entry::Schema(SchemaValue {
                subject: subject.into(),
                version,
                id,
                schema,
                deleted: false,
            }),
        ))
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

    fn register(store: &mut Store, subject: &str, raw: &str) -> Result<u32, RegistryError> {
        match store.register(subject, raw)? {
            Registration::Existing(id) => Ok(id),
            Registration::New(id, entry) => {
                store.apply(&entry).unwrap();
                Ok(id)
            }
        }
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
        assert_eq!(s.register("a-value", "{nope").unwrap_err().code, 42201);
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
            if let Registration::New(_, e) = s.register(subject, raw).unwrap() {
                s.apply(&e).unwrap();
                log.push(e);
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
    }
}
