//! The highest id the registry ever served, kept on disk (`registry.state_dir`), so that a
//! wiped or recreated `_schemas` never makes it hand out an old id again.
//!
//! One file per topic, `<topic>.highest-id`, holding a decimal number. It only ever rises:
//! each write takes an exclusive lock on the file, reads it, and writes the larger value to
//! a temporary file that is synced and renamed over it, so instances sharing the
//! directory never lower it and a crash never leaves it half-written.

use anyhow::{Context, Result};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The floor file of one topic in one state directory.
#[derive(Debug, Clone)]
pub struct Floor {
    file: PathBuf,
    lock: PathBuf,
}

impl Floor {
    /// The floor of `topic` under `dir`, which is created if needed.
    pub fn open(dir: &Path, topic: &str) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating registry.state_dir {}", dir.display()))?;
        Ok(Self {
            file: dir.join(format!("{topic}.highest-id")),
            lock: dir.join(format!("{topic}.lock")),
        })
    }

    /// Where the floor is kept.
    pub fn path(&self) -> &Path {
        &self.file
    }

    /// The highest id recorded, 0 when none is.
    pub fn read(&self) -> Result<u32> {
        match std::fs::read_to_string(&self.file) {
            Ok(text) => text
                .trim()
                .parse()
                .with_context(|| format!("{} does not hold a schema id", self.file.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e).with_context(|| format!("reading {}", self.file.display())),
        }
    }

    /// Records that ids up to `id` were served; returns the floor now recorded.
    pub fn raise(&self, id: u32) -> Result<u32> {
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock)
            .with_context(|| format!("opening {}", self.lock.display()))?;
        lock.lock()
            .with_context(|| format!("locking {}", self.lock.display()))?;
        let current = self.read()?;
        if id <= current {
            return Ok(current);
        }
        let tmp = self.file.with_extension("highest-id.tmp");
        let mut f = File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
        writeln!(f, "{id}")?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.file).with_context(|| format!("replacing {}", self.file.display()))?;
        if let Some(dir) = self.file.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_only_rises_and_survives_reopening() {
        let dir = std::env::temp_dir().join(format!("chainflow-floor-{}", std::process::id()));
        let floor = Floor::open(&dir, "_schemas").unwrap();
        assert_eq!(floor.read().unwrap(), 0);
        assert_eq!(floor.raise(7).unwrap(), 7);
        assert_eq!(floor.raise(3).unwrap(), 7);
        assert_eq!(Floor::open(&dir, "_schemas").unwrap().read().unwrap(), 7);
        // one file per topic
        assert_eq!(Floor::open(&dir, "other").unwrap().read().unwrap(), 0);
        std::fs::write(floor.path(), "not a number").unwrap();
        assert!(floor.read().unwrap_err().to_string().contains("_schemas.highest-id"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
