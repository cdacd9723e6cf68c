//! Which common readers open which of our tables: the support table `doctor` reports from, and
//! the one README "Querying the tables" shows (keep the two alike).
//!
//! Tables this target creates use at most one reader feature: `deletionVectors` (reader version
//! 3), and only with the `deletion_vectors: true` opt-in. Every other table is reader version 1,
//! which every reader below opens. Versions are those that added deletion vector reads, where
//! known; `Unverified` says we have not confirmed a version (check the engine's own notes).

use serde::Serialize;

/// Whether a reader reads deletion vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "support", content = "note", rename_all = "snake_case")]
pub enum DvSupport {
    /// Reads them, since the version named.
    Since(&'static str),
    /// Refuses tables with them (why, and what to use instead).
    No(&'static str),
    /// Said to read them, but the first version is not confirmed.
    Unverified(&'static str),
}

/// One common reader of Delta tables.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Reader {
    pub name: &'static str,
    pub deletion_vectors: DvSupport,
}

/// The readers `doctor` reports on, in README order.
pub const READERS: &[Reader] = &[
    Reader {
        name: "DuckDB (delta extension, delta_scan)",
        deletion_vectors: DvSupport::Since("DuckDB 0.10.3, the extension's first release (kernel-based); tested"),
    },
    Reader {
        name: "Spark with Delta Lake",
        deletion_vectors: DvSupport::Since("Delta Lake 2.3.0"),
    },
    Reader {
        name: "Databricks",
        deletion_vectors: DvSupport::Since("Databricks Runtime 12.2 LTS"),
    },
    Reader {
        name: "Trino (Delta Lake connector)",
        deletion_vectors: DvSupport::Unverified("current releases read reader version 3"),
    },
    Reader {
        name: "Amazon Athena",
        deletion_vectors: DvSupport::Unverified(
            "engine v3 now documents reader version 3; earlier engine v3 releases (Delta 2.0.2) refuse",
        ),
    },
    Reader {
        name: "Snowflake (Delta-based Iceberg tables)",
        deletion_vectors: DvSupport::Since("the 2026-03-02 release (minReaderVersion 3)"),
    },
    Reader {
        name: "BigQuery (BigLake Delta tables)",
        deletion_vectors: DvSupport::Unverified("not confirmed"),
    },
    Reader {
        name: "polars read_delta",
        deletion_vectors: DvSupport::Since(
            "polars 2.1.0 (tested: replaced rows left out); older releases refused them",
        ),
    },
    Reader {
        name: "deltalake (Python) DeltaTable.to_pyarrow_table",
        deletion_vectors: DvSupport::No("refuses reader version 3; use QueryBuilder"),
    },
    Reader {
        name: "deltalake (Python) QueryBuilder",
        deletion_vectors: DvSupport::Since("deltalake 1.x; tested with 1.6.6"),
    },
];

/// Whether a reader opens a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", content = "why", rename_all = "snake_case")]
pub enum Opens {
    Yes,
    No(String),
    /// The table uses a feature this table of support does not cover.
    Unknown(String),
}

/// Whether `reader` opens a table of `min_reader_version` with `reader_features`.
pub fn opens(reader: &Reader, min_reader_version: i32, reader_features: &[String]) -> Opens {
    if min_reader_version <= 1 {
        return Opens::Yes;
    }
    if min_reader_version == 2 {
        return Opens::Unknown("reader version 2 (column mapping)".into());
    }
    let mut verdict = Opens::Yes;
    for feature in reader_features {
        match (feature.as_str(), reader.deletion_vectors) {
            ("deletionVectors", DvSupport::Since(_)) => {}
            ("deletionVectors", DvSupport::No(why)) => {
                return Opens::No(format!("deletion vectors: {why}"));
            }
            ("deletionVectors", DvSupport::Unverified(why)) => {
                verdict = Opens::Unknown(format!("deletion vectors: {why}"));
            }
            (other, _) => verdict = Opens::Unknown(format!("reader feature {other}")),
        }
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(name: &str) -> &'static Reader {
        READERS
            .iter()
            .find(|r| r.name.starts_with(name))
            .expect("listed")
    }

    #[test]
    fn a_reader_version_1_table_opens_everywhere_and_vectors_narrow_it() {
        assert!(READERS.iter().all(|r| opens(r, 1, &[]) == Opens::Yes));
        let dv = ["deletionVectors".to_string()];
        assert_eq!(opens(reader("DuckDB"), 3, &dv), Opens::Yes);
        assert!(matches!(
            opens(reader("deltalake (Python) DeltaTable"), 3, &dv),
            Opens::No(_)
        ));
        assert_eq!(opens(reader("polars"), 3, &dv), Opens::Yes);
        assert!(matches!(opens(reader("Trino"), 3, &dv), Opens::Unknown(_)));
        assert!(matches!(
            opens(reader("DuckDB"), 3, &["columnMapping".to_string()]),
            Opens::Unknown(_)
        ));
    }
}
