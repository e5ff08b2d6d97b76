//! The SQLite store of the audit log: open or create (refusing files that are not ours), append
//! records in one transaction each, read them back in chain order; it never rewrites or deletes
//! a record.
//!
//! WAL mode with `synchronous = FULL`: a commit is on disk when `append` returns, so a
//! decision the caller then hands out is never lost to a crash or power cut (NORMAL would
//! only lose the last commits on power loss, but those are exactly decisions already
//! returned). The fsync is paid once per append, and writers append a batch of records
//! per transaction, so it is amortised. A crash mid-append rolls the whole transaction
//! back: there is never half a record or a broken link.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior};
use serde::Serialize;
use serde_json::Value;

use super::{AuditError, Digest256, Head, Record, Sink, StoreCause, WalRefusal};
use crate::request::Artifact;

/// SQLite's `application_id` of an audit log: "ppau" (promo-policy audit), so a database
/// written by something else is refused instead of extended.
pub const APPLICATION_ID: i64 = 0x7070_6175;

/// The record format this build writes (`user_version`); older versions stay readable.
pub const FORMAT_VERSION: i64 = 1;

/// How long a writer waits for another writer's transaction (a second process appending
/// to the same log) before giving up: far longer than one batch commit takes.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Rows read per round trip when walking the log: enough to keep the verifier's threads
/// busy (a few dozen records each), few enough to keep memory low. A row with its stored
/// request is about 3 KB of text but several times that decoded, so a chunk of 1024 held
/// about 20 MB at the peak; 256 hold a quarter of it.
pub const READ_CHUNK: usize = 256;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS records (
    seq             INTEGER PRIMARY KEY,
    decision_id     TEXT NOT NULL,
    request_id      TEXT NOT NULL,
    artifact_name   TEXT NOT NULL,
    artifact_digest TEXT NOT NULL,
    from_env        TEXT NOT NULL,
    to_env          TEXT NOT NULL,
    allowed         INTEGER NOT NULL,
    violations      TEXT NOT NULL,
    evaluated_at    TEXT NOT NULL,
    bundle_sha256   TEXT NOT NULL,
    request_sha256  TEXT NOT NULL,
    request         TEXT,
    masked          TEXT NOT NULL,
    envelope        TEXT NOT NULL,
    prev_hash       TEXT NOT NULL,
    hash            TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_evaluated_at ON records (evaluated_at);
";

const COLUMNS: &str = "seq, decision_id, request_id, artifact_name, artifact_digest, from_env, \
    to_env, allowed, violations, evaluated_at, bundle_sha256, request_sha256, request, masked, \
    envelope, prev_hash, hash";

/// A row as read back: its seq, and the record or why its columns are not one (a column
/// edited to garbage), for the verifier to report rather than fail on.
pub type Row = (u64, Result<Record, RowError>);

/// Why a row (or an export's line) cannot be read back as a record. The verifier reports
/// it as an edit; print it with [`crate::error_chain::ErrorChain`] for the cause's words.
#[derive(Debug, thiserror::Error)]
pub enum RowError {
    /// SQLite could not hand the column over.
    #[error("column `{column}`")]
    Sqlite {
        /// The column.
        column: &'static str,
        /// SQLite's error (boxed: it is large, and rows travel by value).
        #[source]
        source: Box<rusqlite::Error>,
    },
    /// A text column holds another type.
    #[error("column `{column}` holds {found}, not text")]
    NotText {
        /// The column.
        column: &'static str,
        /// What it holds.
        found: rusqlite::types::Type,
    },
    /// A text column's bytes are not UTF-8.
    #[error("column `{column}` is not UTF-8")]
    NotUtf8 {
        /// The column.
        column: &'static str,
        /// Where the bytes stop being UTF-8.
        #[source]
        source: std::string::FromUtf8Error,
    },
    /// A JSON column's text is not JSON.
    #[error("column `{column}` is not JSON")]
    NotJson {
        /// The column.
        column: &'static str,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// A JSON column holds JSON of another shape.
    #[error("column `{column}`")]
    Shape {
        /// The column.
        column: &'static str,
        /// What does not fit.
        #[source]
        source: serde_json::Error,
    },
    /// `allowed` is neither 0 nor 1.
    #[error("column `allowed` is not 0 or 1")]
    NotBool,
    /// An export's line is not an audit record.
    #[error("line {line} is not an audit record")]
    Line {
        /// The line (1-based).
        line: u64,
        /// What does not parse.
        #[source]
        source: serde_json::Error,
    },
}

/// Which records `audit query` returns; every field narrows, `None` does not.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Artifact digest: `(algorithm, hex)`, or any algorithm when the first is `None`.
    pub digest: Option<(Option<String>, String)>,
    /// Source or target environment.
    pub env: Option<String>,
    /// Outcome.
    pub allowed: Option<bool>,
    /// `evaluatedAt >= since` (RFC 3339 UTC seconds, as decisions write it).
    pub since: Option<String>,
    /// `evaluatedAt < until`.
    pub until: Option<String>,
    /// Has a violation with this id.
    pub violation: Option<String>,
    /// `seq >= from_seq`.
    pub from_seq: Option<u64>,
}

/// An open audit log.
#[derive(Debug)]
pub struct AuditLog {
    conn: Connection,
    path: PathBuf,
    head: Head,
    log_id: String,
}

impl AuditLog {
    /// Open the log at `path` for appending, creating it (and its schema) if the file
    /// does not exist. Checks everything a later append needs (the directory, write
    /// access, that the file is ours) before returning, so a writer can refuse to decide
    /// anything it could not record. `max_pages` caps the file (`PRAGMA max_page_count`;
    /// tests use it to fill the "disk").
    pub fn open_for_append(path: &Path, max_pages: Option<u64>) -> Result<Self, AuditError> {
        let unwritable = |finding: String| AuditError::Unwritable {
            path: path.to_path_buf(),
            cause: finding.into(),
        };
        if path.is_dir() {
            return Err(unwritable("it is a directory".into()));
        }
        if !path.exists() {
            let parent = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            if !parent.is_dir() {
                return Err(unwritable(format!(
                    "directory `{}` does not exist",
                    parent.display()
                )));
            }
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(path, flags)
            .map_err(|e| classify(path, e, Access::Write))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| classify(path, e, Access::Write))?;
        // Reads the header: garbage and foreign files are refused before anything is written.
        let existing = identify(&conn, path)?;
        use_wal(&conn, path)?;
        conn.execute_batch("PRAGMA synchronous = FULL")
            .map_err(|e| classify(path, e, Access::Write))?;
        if let Some(pages) = max_pages {
            conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(|e| classify(path, e, Access::Write))?;
        }
        if !existing {
            initialise(&mut conn, path)?;
        }
        // Take the write lock once: a read-only file or directory fails here, not at the
        // first append after a decision was made.
        conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK;")
            .map_err(|e| classify(path, e, Access::Write))?;
        Self::finish(conn, path)
    }

    /// Open an existing log to read (query, export, verify, checkpoint).
    pub fn open_existing(path: &Path) -> Result<Self, AuditError> {
        if !path.exists() {
            return Err(AuditError::Missing {
                path: path.to_path_buf(),
            });
        }
        if path.is_dir() {
            return Err(AuditError::Read {
                path: path.to_path_buf(),
                cause: "it is a directory".into(),
            });
        }
        // Read-write without create: reading a WAL database may have to recover it. On a
        // write-protected file SQLite falls back to read-only by itself.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)
            .map_err(|e| classify(path, e, Access::Read))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| classify(path, e, Access::Read))?;
        if !identify(&conn, path)? {
            return Err(AuditError::Foreign {
                path: path.to_path_buf(),
                reason: "it is an empty database".into(),
            });
        }
        Self::finish(conn, path)
    }

    fn finish(conn: Connection, path: &Path) -> Result<Self, AuditError> {
        let head = read_head(&conn).map_err(|e| classify(path, e, Access::Read))?;
        let log_id: Option<String> = conn
            .query_row("SELECT value FROM meta WHERE key = 'log_id'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| classify(path, e, Access::Read))?;
        Ok(Self {
            conn,
            path: path.to_path_buf(),
            head,
            log_id: log_id.unwrap_or_default(),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// This log's id (a UUIDv7 chosen at creation), which checkpoints name.
    pub fn log_id(&self) -> &str {
        &self.log_id
    }

    /// The last record as of opening or this handle's last append.
    pub fn head(&self) -> &Head {
        &self.head
    }

    /// The last record now (another process may have appended since).
    pub fn current_head(&mut self) -> Result<Head, AuditError> {
        self.head = read_head(&self.conn).map_err(|e| classify(&self.path, e, Access::Read))?;
        Ok(self.head.clone())
    }

    /// Chain `records` after the current head (filling in `seq`, `prevHash`, `hash`) and
    /// commit them in one transaction; all or none are appended. Returns the new head.
    pub fn append(&mut self, records: &mut [Record]) -> Result<Head, AuditError> {
        if records.is_empty() {
            return Ok(self.head.clone());
        }
        let path = self.path.clone();
        let last_committed = self.head.clone();
        let fail = |e: rusqlite::Error, head: &Head| match classify(&path, e, Access::Write) {
            AuditError::Unwritable { cause, .. } | AuditError::Read { cause, .. } => {
                AuditError::Append {
                    path: path.clone(),
                    cause,
                    head: head.clone(),
                }
            }
            other => other,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| fail(e, &last_committed))?;
        // Read inside the write lock: another process may have appended since.
        let mut head = read_head(&tx).map_err(|e| fail(e, &last_committed))?;
        let committed = head.clone();
        {
            let mut insert = tx
                .prepare_cached(&format!(
                    "INSERT INTO records ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
                ))
                .map_err(|e| fail(e, &committed))?;
            for record in records.iter_mut() {
                record.seq = head.seq + 1;
                record.prev_hash = head.hash.clone();
                record.hash = record.compute_hash();
                insert
                    .execute(params![
                        record.seq as i64,
                        record.decision_id,
                        record.request_id,
                        record.artifact.name,
                        json(&record.artifact.digest),
                        record.from,
                        record.to,
                        record.allowed,
                        json(&record.violations),
                        record.evaluated_at,
                        record.bundle_digest.sha256,
                        record.request_digest.sha256,
                        record.request.as_ref().map(Value::to_string),
                        json(&record.masked),
                        record.envelope.to_string(),
                        record.prev_hash,
                        record.hash,
                    ])
                    .map_err(|e| fail(e, &committed))?;
                head = Head {
                    seq: record.seq,
                    hash: record.hash.clone(),
                };
            }
        }
        tx.commit().map_err(|e| fail(e, &committed))?;
        self.head = head.clone();
        Ok(head)
    }

    /// Up to `limit` records with `seq > after` that pass `filter`, in seq order. A row
    /// whose columns cannot be read back as a record (a column edited to garbage) comes
    /// back as `Err` with its seq and what is wrong, for the verifier to report.
    pub fn read(&self, after: u64, limit: usize, filter: &Filter) -> Result<Vec<Row>, AuditError> {
        let mut sql = format!("SELECT {COLUMNS} FROM records WHERE seq > ?");
        let mut args: Vec<rusqlite::types::Value> = vec![(after as i64).into()];
        let mut arg = |sql: &mut String, clause: &str, values: Vec<rusqlite::types::Value>| {
            sql.push_str(" AND ");
            sql.push_str(clause);
            args.extend(values);
        };
        if let Some((algorithm, hex)) = &filter.digest {
            match algorithm {
                Some(a) => arg(
                    &mut sql,
                    "EXISTS (SELECT 1 FROM json_each(artifact_digest) WHERE key = ? AND value = ?)",
                    vec![a.clone().into(), hex.clone().into()],
                ),
                None => arg(
                    &mut sql,
                    "EXISTS (SELECT 1 FROM json_each(artifact_digest) WHERE value = ?)",
                    vec![hex.clone().into()],
                ),
            }
        }
        if let Some(env) = &filter.env {
            arg(
                &mut sql,
                "(from_env = ? OR to_env = ?)",
                vec![env.clone().into(), env.clone().into()],
            );
        }
        if let Some(allowed) = filter.allowed {
            arg(&mut sql, "allowed = ?", vec![i64::from(allowed).into()]);
        }
        if let Some(since) = &filter.since {
            arg(&mut sql, "evaluated_at >= ?", vec![since.clone().into()]);
        }
        if let Some(until) = &filter.until {
            arg(&mut sql, "evaluated_at < ?", vec![until.clone().into()]);
        }
        if let Some(id) = &filter.violation {
            arg(
                &mut sql,
                "EXISTS (SELECT 1 FROM json_each(violations) WHERE value = ?)",
                vec![id.clone().into()],
            );
        }
        if let Some(from) = filter.from_seq {
            arg(&mut sql, "seq >= ?", vec![(from as i64).into()]);
        }
        sql.push_str(&format!(" ORDER BY seq LIMIT {limit}"));
        let read_err = |e| classify(&self.path, e, Access::Read);
        let mut stmt = self.conn.prepare_cached(&sql).map_err(read_err)?;
        let raw = stmt
            .query_map(rusqlite::params_from_iter(args), raw_row)
            .map_err(read_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(read_err)?;
        // Decoding the JSON columns is most of a read: spread it over the rayon pool.
        use rayon::prelude::*;
        Ok(raw.into_par_iter().map(row_record).collect())
    }

    /// The seq of a record after `after` whose stored hash is `hash`, if any: how the
    /// verifier tells a moved record from an edited one.
    pub fn seq_with_hash(&self, hash: &str, after: u64) -> Result<Option<u64>, AuditError> {
        self.conn
            .query_row(
                "SELECT seq FROM records WHERE hash = ?1 AND seq > ?2 ORDER BY seq LIMIT 1",
                params![hash, after as i64],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|s| s.map(|s| s as u64))
            .map_err(|e| classify(&self.path, e, Access::Read))
    }
}

/// JSON text of a column value. Plain data always serialises; were it ever not to, the
/// empty text would not parse back and `audit verify` would name the row.
fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn read_head(conn: &Connection) -> rusqlite::Result<Head> {
    Ok(conn
        .query_row(
            "SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1",
            [],
            |r| {
                Ok(Head {
                    seq: r.get::<_, i64>(0)? as u64,
                    hash: r.get(1)?,
                })
            },
        )
        .optional()?
        .unwrap_or_else(Head::genesis))
}

/// Whether the file is one of our logs (`true`) or an empty database we may initialise
/// (`false`); anything else is an error.
fn identify(conn: &Connection, path: &Path) -> Result<bool, AuditError> {
    let err = |e| classify(path, e, Access::Read);
    // One read transaction, so the header and the tables are read from one state of the
    // file: another process may be creating this log right now.
    let tx = conn.unchecked_transaction().map_err(err)?;
    let conn = &*tx;
    let application_id: i64 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(err)?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(err)?;
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .map_err(err)?;
    let tables = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(err)?;
    let foreign = |reason: String| AuditError::Foreign {
        path: path.to_path_buf(),
        reason,
    };
    if application_id == 0 && version == 0 && tables.is_empty() {
        return Ok(false);
    }
    if application_id != APPLICATION_ID {
        return Err(foreign(format!(
            "its application_id is {application_id:#x}, not {APPLICATION_ID:#x}, and it holds the tables [{}]",
            tables.join(", ")
        )));
    }
    if version > FORMAT_VERSION {
        return Err(AuditError::Newer {
            path: path.to_path_buf(),
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    if !tables.iter().any(|t| t == "records") || !tables.iter().any(|t| t == "meta") {
        return Err(foreign(format!(
            "its tables are [{}], not meta and records",
            tables.join(", ")
        )));
    }
    Ok(true)
}

/// Switch the log to write-ahead logging, waiting out other processes. The switch needs
/// an exclusive lock, and SQLite answers "busy" at once (its busy handler is not called,
/// to avoid a deadlock) while another process holds a lock, which it does while it
/// creates the same new log: so wait here, up to [`BUSY_TIMEOUT`], as a writer would.
fn use_wal(conn: &Connection, path: &Path) -> Result<(), AuditError> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(2);
    loop {
        let refusal =
            match conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0)) {
                Ok(mode) if mode.eq_ignore_ascii_case("wal") => return Ok(()),
                Ok(mode) => WalRefusal::Mode(mode),
                Err(e)
                    if matches!(
                        e.sqlite_error_code(),
                        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
                    ) =>
                {
                    WalRefusal::Busy(Box::new(e))
                }
                Err(e) => return Err(classify(path, e, Access::Write)),
            };
        if std::time::Instant::now() >= deadline {
            return Err(AuditError::Unwritable {
                path: path.to_path_buf(),
                cause: StoreCause::Wal {
                    seconds: BUSY_TIMEOUT.as_secs(),
                    refusal,
                },
            });
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

fn initialise(conn: &mut Connection, path: &Path) -> Result<(), AuditError> {
    let err = |e| classify(path, e, Access::Write);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    // Another process may have initialised it between our check and our lock.
    let id: i64 = tx
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(err)?;
    if id == APPLICATION_ID {
        return Ok(());
    }
    tx.execute_batch(SCHEMA).map_err(err)?;
    tx.execute_batch(&format!(
        "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {FORMAT_VERSION};"
    ))
    .map_err(err)?;
    let now = crate::input::format_time(time::OffsetDateTime::now_utc());
    for (key, value) in [
        ("format", "promo-policy-audit".to_string()),
        ("version", FORMAT_VERSION.to_string()),
        ("log_id", uuid::Uuid::now_v7().to_string()),
        ("created_at", now),
        ("engine", crate::decision::ENGINE_VERSION.to_string()),
    ] {
        tx.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES (?1, ?2)",
            params![key, value],
        )
        .map_err(err)?;
    }
    tx.commit().map_err(err)
}

#[derive(Clone, Copy)]
enum Access {
    Read,
    Write,
}

/// Name SQLite's failure in the log's terms.
fn classify(path: &Path, e: rusqlite::Error, access: Access) -> AuditError {
    let path = path.to_path_buf();
    let corrupt = matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt)
    );
    let cause = StoreCause::from(e);
    match (corrupt, access) {
        (true, _) => AuditError::Corrupt { path, cause },
        (false, Access::Write) => AuditError::Unwritable { path, cause },
        (false, Access::Read) => AuditError::Read { path, cause },
    }
}

fn typed<T: serde::de::DeserializeOwned>(v: Value, column: &'static str) -> Result<T, RowError> {
    serde_json::from_value(v).map_err(|source| RowError::Shape { column, source })
}

/// A row's columns as SQLite holds them, copied out so they can be decoded off the
/// connection's thread.
struct RawRow {
    seq: u64,
    columns: Vec<Column>,
}

/// One column, copied out of SQLite.
enum Column {
    Text(Vec<u8>),
    Integer(i64),
    Null,
    /// Another type.
    Other(rusqlite::types::Type),
    /// SQLite could not hand it over.
    Failed(rusqlite::Error),
}

/// Copy a row's columns out (the cheap, serial part of reading).
fn raw_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
    use rusqlite::types::ValueRef;
    let seq = row.get::<_, i64>(0)? as u64;
    let columns = (1..17)
        .map(|i| match row.get_ref(i) {
            Ok(ValueRef::Text(t)) => Column::Text(t.to_vec()),
            Ok(ValueRef::Integer(n)) => Column::Integer(n),
            Ok(ValueRef::Null) => Column::Null,
            Ok(other) => Column::Other(other.data_type()),
            Err(e) => Column::Failed(e),
        })
        .collect();
    Ok(RawRow { seq, columns })
}

/// A column as text, or why it is not.
fn column_text(column: Column, name: &'static str) -> Result<String, RowError> {
    use rusqlite::types::Type;
    let not_text = |found| RowError::NotText {
        column: name,
        found,
    };
    match column {
        Column::Text(t) => String::from_utf8(t).map_err(|source| RowError::NotUtf8 {
            column: name,
            source,
        }),
        Column::Integer(_) => Err(not_text(Type::Integer)),
        Column::Null => Err(not_text(Type::Null)),
        Column::Other(found) => Err(not_text(found)),
        Column::Failed(e) => Err(RowError::Sqlite {
            column: name,
            source: Box::new(e),
        }),
    }
}

/// A row as a record; a column that does not read back is an `Err` naming it.
fn row_record(raw: RawRow) -> Row {
    let RawRow { seq, columns } = raw;
    let mut columns = columns.into_iter();
    let json = |text: Result<String, RowError>, column: &'static str| -> Result<Value, RowError> {
        serde_json::from_str(&text?).map_err(|source| RowError::NotJson { column, source })
    };
    let record = (|| -> Result<Record, RowError> {
        let mut next =
            |name: &'static str| column_text(columns.next().unwrap_or(Column::Null), name);
        let decision_id = next("decision_id")?;
        let request_id = next("request_id")?;
        let artifact_name = next("artifact_name")?;
        let artifact_digest = json(next("artifact_digest"), "artifact_digest")?;
        let from = next("from_env")?;
        let to = next("to_env")?;
        let allowed = match columns.next() {
            Some(Column::Integer(0)) => false,
            Some(Column::Integer(1)) => true,
            _ => return Err(RowError::NotBool),
        };
        let mut next =
            |name: &'static str| column_text(columns.next().unwrap_or(Column::Null), name);
        let violations = json(next("violations"), "violations")?;
        let evaluated_at = next("evaluated_at")?;
        let bundle = next("bundle_sha256")?;
        let request_sha = next("request_sha256")?;
        let request = match columns.next() {
            Some(Column::Null) | None => None,
            Some(other) => Some(json(column_text(other, "request"), "request")?),
        };
        let mut next =
            |name: &'static str| column_text(columns.next().unwrap_or(Column::Null), name);
        Ok(Record {
            seq,
            decision_id,
            request_id,
            artifact: Artifact {
                name: artifact_name,
                digest: typed(artifact_digest, "artifact_digest")?,
            },
            from,
            to,
            allowed,
            violations: typed(violations, "violations")?,
            evaluated_at,
            bundle_digest: Digest256 { sha256: bundle },
            request_digest: Digest256 {
                sha256: request_sha,
            },
            request,
            masked: typed(json(next("masked"), "masked")?, "masked")?,
            envelope: json(next("envelope"), "envelope")?,
            prev_hash: next("prev_hash")?,
            hash: next("hash")?,
        })
    })();
    (seq, record)
}

impl Sink for AuditLog {
    fn head(&self) -> Head {
        AuditLog::head(self).clone()
    }

    fn append(&mut self, records: &mut [Record]) -> Result<Head, AuditError> {
        AuditLog::append(self, records)
    }
}

/// Why a scratch database (see `scratch_database`) failed.
#[derive(Debug, thiserror::Error)]
pub enum ScratchError {
    /// SQLite refused: the temporary file could not be made, written or read.
    #[error("SQLite")]
    Sqlite(#[from] rusqlite::Error),
    /// What was written is not what came back: the scratch file is not behaving.
    #[error("{0}")]
    Inconsistent(String),
}

/// A private scratch database for work too big for memory (the verifier's decision ids,
/// the report's set-aside durations): SQLite's temporary on-disk file (in SQLITE_TMPDIR,
/// TMPDIR, /var/tmp or /tmp, unlinked when the connection closes) with no journal and no
/// syncs, since nothing in it has to survive a crash; `schema` created and one long
/// transaction open, whose pages spill to the file once the `cache_kib` cache is full.
pub(crate) fn scratch_database(cache_kib: i64, schema: &str) -> rusqlite::Result<Connection> {
    let conn = Connection::open("")?;
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = OFF;
         PRAGMA synchronous = OFF;
         PRAGMA temp_store = FILE;
         PRAGMA cache_size = -{cache_kib};
         {schema}
         BEGIN;"
    ))?;
    Ok(conn)
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails loudly on a broken fixture"
)]
mod tests {
    use super::*;
    use crate::audit::tests::signed;
    use crate::audit::{RecordOptions, GENESIS};

    fn records(n: usize) -> Vec<Record> {
        let (decision, envelope, request) = signed();
        let record = RecordOptions::default()
            .prepare(&decision, &envelope, &request)
            .unwrap();
        (0..n).map(|_| record.clone()).collect()
    }

    #[test]
    fn appends_chain_and_read_back_the_same_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let mut log = AuditLog::open_for_append(&path, None).unwrap();
        assert_eq!(log.head(), &Head::genesis());
        let mut first = records(2);
        let head = log.append(&mut first).unwrap();
        assert_eq!(head.seq, 2);
        assert_eq!(first[0].prev_hash, GENESIS);
        assert_eq!(first[1].prev_hash, first[0].hash);
        let mut more = records(1);
        log.append(&mut more).unwrap();
        drop(log);

        let log = AuditLog::open_existing(&path).unwrap();
        assert_eq!(log.head().seq, 3);
        assert_eq!(log.log_id().len(), 36);
        let back = log.read(0, 10, &Filter::default()).unwrap();
        let back: Vec<Record> = back.into_iter().map(|(_, r)| r.unwrap()).collect();
        assert_eq!(back[..2], first[..]);
        assert_eq!(back[2], more[0]);
        assert_eq!(back[2].prev_hash, first[1].hash);
        for r in &back {
            assert_eq!(r.compute_hash(), r.hash);
        }
        assert_eq!(log.read(2, 10, &Filter::default()).unwrap().len(), 1);
        assert_eq!(log.seq_with_hash(&first[1].hash, 0).unwrap(), Some(2));
        assert_eq!(log.seq_with_hash(&first[1].hash, 2).unwrap(), None);
    }

    #[test]
    fn a_column_edited_to_garbage_is_named_with_its_cause() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let mut log = AuditLog::open_for_append(&path, None).unwrap();
        log.append(&mut records(4)).unwrap();
        log.conn
            .execute_batch(
                "UPDATE records SET violations = 'nope' WHERE seq = 1;
                 UPDATE records SET masked = 42 WHERE seq = 2;
                 UPDATE records SET envelope = x'ff' WHERE seq = 3;
                 UPDATE records SET artifact_digest = '[1]' WHERE seq = 4;",
            )
            .unwrap();
        let said: Vec<String> = log
            .read(0, 10, &Filter::default())
            .unwrap()
            .iter()
            .map(|(_, r)| crate::error_chain::ErrorChain(r.as_ref().unwrap_err()).to_string())
            .collect();
        assert_eq!(
            said,
            [
                "column `violations` is not JSON: expected ident at line 1 column 2",
                // TEXT affinity: SQLite stores the 42 as text.
                "column `masked`: invalid type: integer `42`, expected a sequence",
                "column `envelope` holds Blob, not text",
                "column `artifact_digest`: invalid type: sequence, expected a map",
            ]
        );
    }

    #[test]
    fn foreign_empty_and_garbage_files_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let foreign = dir.path().join("other.db");
        Connection::open(&foreign)
            .unwrap()
            .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
        let e = AuditLog::open_for_append(&foreign, None).unwrap_err();
        assert!(matches!(e, AuditError::Foreign { .. }), "{e}");
        assert!(e.to_string().contains("other.db"), "{e}");

        let garbage = dir.path().join("garbage.db");
        std::fs::write(&garbage, vec![0x5a; 8192]).unwrap();
        let e = AuditLog::open_existing(&garbage).unwrap_err();
        assert!(matches!(e, AuditError::Corrupt { .. }), "{e}");
        let e = AuditLog::open_for_append(&garbage, None).unwrap_err();
        assert!(matches!(e, AuditError::Corrupt { .. }), "{e}");

        let e = AuditLog::open_existing(&dir.path().join("none.db")).unwrap_err();
        assert!(matches!(e, AuditError::Missing { .. }), "{e}");
        let e = AuditLog::open_for_append(&dir.path().join("no/dir/a.db"), None).unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
    }

    #[test]
    fn a_full_log_fails_the_whole_append_and_keeps_its_head() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let mut log = AuditLog::open_for_append(&path, Some(40)).unwrap();
        let mut appended = 0;
        let err = loop {
            let mut batch = records(5);
            match log.append(&mut batch) {
                Ok(head) => appended = head.seq,
                Err(e) => break e,
            }
            assert!(appended < 10_000, "the page limit never bit");
        };
        let AuditError::Append { head, cause, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(head.seq, appended, "{cause}");
        assert!(matches!(cause, StoreCause::Sqlite(_)), "{cause:?}");
        assert!(cause.to_string().contains("full"), "{cause}");
        // Printed with its chain, the cause is said once.
        let said = crate::error_chain::ErrorChain(&err).to_string();
        assert_eq!(said, err.to_string());
        assert_eq!(said.matches("full").count(), 1, "{said}");
        drop(log);
        let log = AuditLog::open_existing(&path).unwrap();
        assert_eq!(
            log.head().seq,
            appended,
            "nothing of the failed batch is kept"
        );
    }
}
