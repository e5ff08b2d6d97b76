//! The report's scratch file: the exact durations of trend buckets the log has moved past,
//! written to a private SQLite database (a temporary file SQLite deletes when it is
//! closed) and read back when the bucket is rendered or a late record lands in it; it
//! holds nothing but those values and never touches the audit log.

use rusqlite::{params, Connection, OptionalExtension};

use crate::audit::store::ScratchError;

/// Page cache of the scratch database, in KiB: values are written once and read once,
/// so the cache only has to hold the b-tree's path.
pub const SPILL_CACHE_KIB: i64 = 1024;

/// Durations set aside, by trend cell (bucket start, environment id) and kind.
pub(super) struct Spill {
    conn: Connection,
}

impl Spill {
    /// A new, empty scratch database.
    pub(super) fn new() -> Result<Self, ScratchError> {
        let conn = crate::audit::store::scratch_database(
            SPILL_CACHE_KIB,
            "CREATE TABLE durations (
                 bucket INTEGER NOT NULL,
                 env    INTEGER NOT NULL,
                 kind   INTEGER NOT NULL,
                 vals   BLOB NOT NULL,
                 PRIMARY KEY (bucket, env, kind)
             ) WITHOUT ROWID;",
        )?;
        Ok(Self { conn })
    }

    /// Set `values` aside under the key; refused (an error) if values are already there.
    pub(super) fn put(
        &mut self,
        key: (i64, u32),
        kind: u8,
        values: &[f64],
    ) -> Result<(), ScratchError> {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.conn
            .prepare_cached(
                "INSERT INTO durations (bucket, env, kind, vals) VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut insert| insert.execute(params![key.0, key.1, kind, bytes]))
            .map(|_| ())
            .map_err(ScratchError::from)
    }

    /// The values set aside under the key, removed from the file; none if nothing is there.
    pub(super) fn take(&mut self, key: (i64, u32), kind: u8) -> Result<Vec<f64>, ScratchError> {
        let bytes: Option<Vec<u8>> = self
            .conn
            .prepare_cached(
                "DELETE FROM durations WHERE bucket = ?1 AND env = ?2 AND kind = ?3 RETURNING vals",
            )
            .and_then(|mut delete| {
                delete
                    .query_row(params![key.0, key.1, kind], |row| row.get(0))
                    .optional()
            })?;
        let Some(bytes) = bytes else {
            return Ok(Vec::new());
        };
        if bytes.len() % 8 != 0 {
            return Err(ScratchError::Inconsistent(format!(
                "{} bytes of durations for one cell are not whole values",
                bytes.len()
            )));
        }
        Ok(bytes
            .chunks_exact(8)
            .map(|b| {
                let mut v = [0u8; 8];
                v.copy_from_slice(b);
                f64::from_le_bytes(v)
            })
            .collect())
    }
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
    fn values_come_back_once_and_exactly() {
        let mut spill = Spill::new().unwrap();
        let values = [0.0, 1.5, 86_400.0, f64::MAX, 3.0];
        spill.put((1_788_739_200, 2), 1, &values).unwrap();
        spill.put((1_788_739_200, 2), 0, &[7.0]).unwrap();
        assert!(
            spill.put((1_788_739_200, 2), 1, &[9.0]).is_err(),
            "no overwrite"
        );
        assert_eq!(spill.take((1_788_739_200, 2), 1).unwrap(), values);
        assert_eq!(
            spill.take((1_788_739_200, 2), 1).unwrap(),
            Vec::<f64>::new()
        );
        assert_eq!(spill.take((1_788_739_200, 2), 0).unwrap(), [7.0]);
        assert_eq!(spill.take((0, 0), 0).unwrap(), Vec::<f64>::new());
    }
}
