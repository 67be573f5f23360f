//! What is worth retrying, decided once: ClickHouse's answers are classified by the
//! `Code: N` in their body (ClickHouse 18.16 sends no exception-code header, and answers a
//! missing table with a plain 404); network failures and timeouts are transient. The delay
//! between attempts is `chainflow_runtime::Backoff`, and the class [`Class`] is the runtime's.

use chainflow_runtime::Class;
use std::fmt;
use std::time::Duration;

/// ClickHouse error codes that a later attempt can outlive: a table or database missing or
/// detached (60, 81), timeouts and network trouble (159, 209, 210), an overloaded server
/// (202, 241, 252), a read-only replica or a Keeper session lost (242, 999, 225).
const TRANSIENT_CODES: &[u32] = &[60, 81, 159, 202, 209, 210, 225, 241, 242, 252, 999];

/// ClickHouse error codes that the same rows will always get: they cannot be parsed or
/// converted (6, 26, 27, 53, 70, 72), a value is out of its type's range or bad for an enum
/// or function (36, 69, 321, 395, 691).
const PERMANENT_CODES: &[u32] = &[6, 26, 27, 36, 53, 69, 70, 72, 321, 395, 691];

/// ClickHouse's memory limit (`MEMORY_LIMIT_EXCEEDED`): transient for a server under load,
/// but an insert that keeps getting it is too big for the server, and is split.
pub const MEMORY_LIMIT: u32 = 241;

/// A failed insert: its class and what ClickHouse (or the network) said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Transient or permanent.
    pub class: Class,
    /// ClickHouse's error code, when the answer had one.
    pub code: Option<u32>,
    /// The error, as reported.
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// The `N` of the first `Code: N` in a ClickHouse answer.
pub fn error_code(body: &str) -> Option<u32> {
    let rest = &body[body.find("Code: ")? + "Code: ".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The class of a ClickHouse answer's `Code: N`; an unknown code is transient, so that it
/// is retried within the budget and then fails the stage loudly rather than losing rows.
pub fn class_of_code(code: u32) -> Class {
    if PERMANENT_CODES.contains(&code) {
        Class::Permanent
    } else {
        Class::Transient
    }
}

/// Classifies an error of the clickhouse client.
pub fn classify(e: &clickhouse::error::Error) -> Failure {
    use clickhouse::error::Error as E;
    let message = e.to_string();
    let (class, code) = match e {
        E::BadResponse(body) => match error_code(body) {
            Some(code) if !TRANSIENT_CODES.contains(&code) && !PERMANENT_CODES.contains(&code) => {
                tracing::warn!(
                    code,
                    "ClickHouse error code not known to chainflow: retried as transient"
                );
                (Class::Transient, Some(code))
            }
            Some(code) => (class_of_code(code), Some(code)),
            // no code: a proxy or the server before it could answer (5xx, 404 without a body)
            None => (Class::Transient, None),
        },
        E::Network(_) | E::TimedOut => (Class::Transient, None),
        // the rows could not be encoded: a bug or a record the table cannot hold
        _ => (Class::Permanent, None),
    };
    Failure { class, code, message }
}

/// A failure when an insert takes longer than `after`.
pub fn timed_out(after: Duration) -> Failure {
    Failure {
        class: Class::Transient,
        code: None,
        message: format!("no answer within {} ms (sink.insert_timeout_ms)", after.as_millis()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers captured from ClickHouse 18.16 and 24.8.
    const MISSING_TABLE_18: &str = "Code: 60, e.displayText() = DB::Exception: Table chainflow.chain_snapshots \
        doesn't exist., e.what() = DB::Exception";
    const MISSING_TABLE_24: &str = "Code: 60. DB::Exception: Table chainflow.chain_snapshots does not exist. \
        (UNKNOWN_TABLE) (version 24.8.4.13 (official build))";
    const THROW_IF_18: &str = "Code: 395, e.displayText() = DB::Exception: Value passed to 'throwIf' function \
        is non zero, e.what() = DB::Exception";
    const TOO_MANY_PARTS_24: &str = "Code: 252. DB::Exception: Too many parts (300). Merges are processing \
        significantly slower than inserts. (TOO_MANY_PARTS) (version 24.8.4.13 (official build))";
    const CANNOT_PARSE_24: &str = "Code: 27. DB::Exception: Cannot parse input: expected '\\t' before: 'x': \
        (at row 1) (CANNOT_PARSE_INPUT_ASSERTION_FAILED) (version 24.8.4.13 (official build))";
    const MEMORY_18: &str = "Code: 241, e.displayText() = DB::Exception: Memory limit (for query) exceeded: \
        would use 9.32 GiB, maximum: 9.31 GiB, e.what() = DB::Exception";

    fn bad(body: &str) -> Failure {
        classify(&clickhouse::error::Error::BadResponse(body.to_string()))
    }

    #[test]
    fn codes_are_read_from_both_server_lines() {
        assert_eq!(error_code(MISSING_TABLE_18), Some(60));
        assert_eq!(error_code(MISSING_TABLE_24), Some(60));
        assert_eq!(error_code(THROW_IF_18), Some(395));
        assert_eq!(error_code("404 Not Found"), None);
        assert_eq!(error_code("Code: x"), None);
    }

    #[test]
    fn a_missing_or_detached_table_and_an_overloaded_server_are_transient() {
        for body in [
            MISSING_TABLE_18,
            MISSING_TABLE_24,
            TOO_MANY_PARTS_24,
            MEMORY_18,
            "503 Service Unavailable",
        ] {
            assert_eq!(bad(body).class, Class::Transient, "{body}");
        }
        assert_eq!(classify(&clickhouse::error::Error::TimedOut).class, Class::Transient);
        assert_eq!(timed_out(Duration::from_secs(30)).class, Class::Transient);
    }

    #[test]
    fn refused_rows_are_permanent() {
        for body in [THROW_IF_18, CANNOT_PARSE_24] {
            let f = bad(body);
            assert_eq!(f.class, Class::Permanent, "{body}");
            assert!(f.message.contains("DB::Exception"));
        }
        assert_eq!(bad(THROW_IF_18).code, Some(395));
    }

    #[test]
    fn an_unknown_code_is_retried_not_dead_lettered() {
        assert_eq!(class_of_code(12_345), Class::Transient);
    }
}
