//! The verifier's memory of the decision ids it has walked past, kept in a private scratch
//! SQLite database (a temporary file SQLite deletes when it is closed) so that it stays
//! flat however long the log is; it only ever holds ids the walk itself read from verified
//! rows, and never touches the log.
//!
//! Why not an index on the log's `decision_id` column: an index is part of the file being
//! verified, and SQLite answers a query from it without checking it against the rows. A
//! tamperer who slips in a copy of a signed record can also point the index's definition
//! at another column (`PRAGMA writable_schema`), and a duplicate query through it then
//! finds nothing while `PRAGMA quick_check` still says `ok`. The ids here come from the
//! rows the walk reads, so the check is exactly as strong as the in-memory set it
//! replaces.

use rusqlite::{params, Connection, OptionalExtension};

use super::store::ScratchError;
use super::AuditError;

/// Page cache of the scratch database, in KiB: the ids of a log are about 40 bytes each
/// on disk (40 MB for a million records), so the cache holds the b-tree's interior pages
/// and the leaves being appended to (UUIDv7 ids arrive in roughly increasing order), and
/// the rest stays in the file, read back from the OS page cache when an old id is hit.
pub const SEEN_CACHE_KIB: i64 = 2048;

/// Decision ids seen so far, each with the seq of the record that carried it.
pub(crate) struct SeenIds {
    conn: Connection,
}

impl SeenIds {
    /// An empty set in a new scratch database.
    pub(crate) fn new() -> Result<Self, AuditError> {
        let scratch = |e: rusqlite::Error| AuditError::Scratch(e.into());
        let conn = super::store::scratch_database(
            SEEN_CACHE_KIB,
            "CREATE TABLE seen (id BLOB PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;",
        )
        .map_err(scratch)?;
        Ok(Self { conn })
    }

    /// Record that the record at `seq` carries decision `id`; if an earlier record
    /// already carried it, that record's seq (and `id` stays recorded at it).
    pub(crate) fn first_seen(&mut self, id: &str, seq: u64) -> Result<Option<u64>, AuditError> {
        let scratch = |e: rusqlite::Error| AuditError::Scratch(e.into());
        let key = id_key(id).to_be_bytes();
        let inserted = self
            .conn
            .prepare_cached(
                "INSERT INTO seen (id, seq) VALUES (?1, ?2) ON CONFLICT (id) DO NOTHING",
            )
            .and_then(|mut insert| insert.execute(params![key.as_slice(), seq as i64]))
            .map_err(scratch)?;
        if inserted == 1 {
            return Ok(None);
        }
        let earlier = self
            .conn
            .prepare_cached("SELECT seq FROM seen WHERE id = ?1")
            .and_then(|mut select| {
                select
                    .query_row(params![key.as_slice()], |row| row.get::<_, i64>(0))
                    .optional()
            })
            .map_err(scratch)?;
        match earlier {
            Some(earlier) => Ok(Some(earlier as u64)),
            // INVARIANT: the insert was ignored only because the id is there; its absence
            // means the scratch database is not behaving, and the walk must not go on as
            // if the id were new.
            None => Err(AuditError::Scratch(ScratchError::Inconsistent(format!(
                "decision `{id}` was neither recorded nor found"
            )))),
        }
    }
}

/// A stable key for a decision id: the UUID's bits (so the spellings of one UUID are one
/// id), or the first 16 bytes of the SHA-256 of any other text.
fn id_key(id: &str) -> u128 {
    uuid::Uuid::parse_str(id).map_or_else(
        |_| {
            use sha2::Digest as _;
            let d = sha2::Sha256::digest(id.as_bytes());
            let mut bytes = [0u8; 16];
            bytes.copy_from_slice(&d[..16]);
            u128::from_be_bytes(bytes)
        },
        |u| u.as_u128(),
    )
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

    #[test]
    fn an_id_seen_before_names_the_record_that_first_carried_it() {
        let mut seen = SeenIds::new().unwrap();
        let a = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
        assert_eq!(seen.first_seen(a, 1).unwrap(), None);
        assert_eq!(seen.first_seen("not-a-uuid", 2).unwrap(), None);
        assert_eq!(seen.first_seen(&a.to_uppercase(), 3).unwrap(), Some(1));
        assert_eq!(seen.first_seen("not-a-uuid", 4).unwrap(), Some(2));
        assert_eq!(seen.first_seen(a, 5).unwrap(), Some(1), "still the first");
        assert_eq!(seen.first_seen("not-a-uuid-either", 6).unwrap(), None);
    }

    #[test]
    fn many_ids_are_kept_on_disk_not_forgotten() {
        // Far more ids than the page cache holds: the early ones must still be found.
        let mut seen = SeenIds::new().unwrap();
        let n: u64 = 200_000;
        for seq in 1..=n {
            let id = uuid::Uuid::from_u128(
                u128::from(seq).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835),
            );
            assert_eq!(seen.first_seen(&id.to_string(), seq).unwrap(), None);
        }
        for seq in [1, 2, n / 2, n] {
            let id = uuid::Uuid::from_u128(
                u128::from(seq).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835),
            );
            assert_eq!(
                seen.first_seen(&id.to_string(), n + seq).unwrap(),
                Some(seq)
            );
        }
    }
}
