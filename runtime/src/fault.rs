//! Fault points, for the test suite only: named places in the stages where a test can make
//! the process fail a call or stop itself, to put a real fault (a frozen broker, a killed
//! process) at an exact point of the protocol. `CHAINFLOW_FAULTS` turns them on; unset, as
//! in production, every point is one check of an empty list. docs/guarantees.md lists the
//! points and the tests that use them.
//!
//! `CHAINFLOW_FAULTS` is a comma-separated list of `POINT=ACTION*COUNT` (`*COUNT` may be
//! left out: once):
//! - `fail`: the call at the point returns an error ([`Injected`]) instead of running;
//! - `stop`: the process stops itself (SIGSTOP) at the point, and goes on from there when
//!   it is continued (SIGCONT);
//! - `abort`: the process aborts at the point (SIGABRT: no destructor runs, nothing is
//!   flushed or committed), as a crash there would end it.
//!
//! For example `CHAINFLOW_FAULTS=enrich.rewind=fail*2,enrich.commit_transaction=stop`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// The variable that arms fault points.
pub const VARIABLE: &str = "CHAINFLOW_FAULTS";

/// What an armed point does when it is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The call at the point fails.
    Fail,
    /// The process stops itself until it is continued.
    Stop,
    /// The process aborts.
    Abort,
}

/// An error a `fail` point returned in place of the call.
#[derive(Debug, thiserror::Error)]
#[error("fault injected at {0} ({VARIABLE})")]
pub struct Injected(pub String);

struct Armed {
    point: String,
    action: Action,
    left: AtomicU32,
}

/// Parses `CHAINFLOW_FAULTS`; an entry it cannot read is an error naming it.
fn parse(spec: &str) -> Result<Vec<Armed>, String> {
    spec.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|entry| {
            let (point, rest) = entry
                .split_once('=')
                .ok_or_else(|| format!("{VARIABLE}: expected POINT=ACTION[*COUNT], got {entry:?}"))?;
            let (action, count) = rest.split_once('*').unwrap_or((rest, "1"));
            let action = match action {
                "fail" => Action::Fail,
                "stop" => Action::Stop,
                "abort" => Action::Abort,
                other => {
                    return Err(format!(
                        "{VARIABLE}: unknown action {other:?} in {entry:?} (fail, stop or abort)"
                    ))
                }
            };
            let count = count
                .parse()
                .map_err(|_| format!("{VARIABLE}: the count in {entry:?} is not a number"))?;
            Ok(Armed {
                point: point.to_string(),
                action,
                left: AtomicU32::new(count),
            })
        })
        .collect()
}

fn armed() -> &'static [Armed] {
    static ARMED: OnceLock<Vec<Armed>> = OnceLock::new();
    ARMED.get_or_init(|| match std::env::var(VARIABLE) {
        Ok(spec) => parse(&spec).unwrap_or_else(|e| panic!("{e}")),
        Err(_) => Vec::new(),
    })
}

/// Reaching the point `name`: `Err` where a `fail` is armed for it; where a `stop` is, the
/// process stops here and this returns once it is continued; where an `abort` is, it never
/// returns.
pub fn point(name: &str) -> Result<(), Injected> {
    let Some(armed) = armed().iter().find(|a| a.point == name) else {
        return Ok(());
    };
    if armed
        .left
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_err()
    {
        return Ok(());
    }
    tracing::warn!(point = name, action = ?armed.action, "fault point reached ({VARIABLE})");
    match armed.action {
        Action::Fail => Err(Injected(name.to_string())),
        Action::Stop => {
            // `kill` rather than raise(3): the workspace forbids unsafe code
            let _ = std::process::Command::new("kill")
                .args(["-STOP", &std::process::id().to_string()])
                .status();
            Ok(())
        }
        Action::Abort => {
            eprintln!("fault point {name} reached: aborting ({VARIABLE})");
            std::process::abort()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_and_bad_ones_are_named() {
        let armed = parse("enrich.rewind=fail*2, enrich.commit_transaction=stop, sink.recorded=abort").unwrap();
        assert_eq!(armed.len(), 3);
        assert_eq!(armed[2].action, Action::Abort);
        assert_eq!(
            (
                armed[0].point.as_str(),
                armed[0].action,
                armed[0].left.load(Ordering::Relaxed)
            ),
            ("enrich.rewind", Action::Fail, 2)
        );
        assert_eq!(
            (armed[1].action, armed[1].left.load(Ordering::Relaxed)),
            (Action::Stop, 1)
        );
        assert!(parse("").unwrap().is_empty());
        for bad in ["enrich.rewind", "x=explode", "x=fail*many"] {
            let e = parse(bad).err().unwrap();
            assert!(
                e.contains(VARIABLE) && e.contains(bad.split('*').next().unwrap()),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn an_unarmed_point_does_nothing() {
        assert!(point("nowhere.at.all").is_ok());
    }
}
