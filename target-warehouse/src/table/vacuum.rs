//! `target-warehouse vacuum` for one table: removes the files the current version does not
//! reference and that are older than a retention (default 7 days, as Delta's own VACUUM), by
//! deltalake's vacuum in its full mode (every file in the directory, not only those the log
//! removed). A file a commit within the retention removed stays, so time travel to any version
//! of the retention still finds its files; a file younger than the retention stays, so a load
//! writing its batch right now keeps it. A retention below the table's
//! `delta.deletedFileRetentionDuration` is refused unless forced.

use deltalake::logstore::object_store::ObjectStoreExt;
use deltalake::operations::vacuum::VacuumMode;

use super::error::TableError;
use super::Table;

/// Delta's default retention of removed files, in hours.
pub const DEFAULT_RETENTION_HOURS: u64 = 7 * 24;

/// What a vacuum did (or would do, in a dry run).
#[derive(Debug, Default, serde::Serialize)]
pub struct Vacuumed {
    pub table: String,
    pub dry_run: bool,
    /// Paths relative to the table.
    pub files: Vec<String>,
}

impl Table {
    /// Files the current version does not reference and older than `retention_hours`, with
    /// their sizes (a listing, nothing removed).
    pub async fn unreferenced_files(
        &self,
        retention_hours: u64,
    ) -> Result<Vec<(String, i64)>, TableError> {
        let (_, metrics) = self
            .vacuum_builder(retention_hours, true, true)
            .await
            .map_err(|e| self.delta_err(e))?;
        let store = self.delta.log_store().object_store(None);
        let mut out = Vec::new();
        // The plan also names removed files that are gone already (an earlier vacuum).
        for path in metrics.files_deleted {
            match store.head(&deltalake::Path::from(path.as_str())).await {
                Ok(m) => out.push((path, i64::try_from(m.size).unwrap_or(i64::MAX))),
                Err(deltalake::ObjectStoreError::NotFound { .. }) => {}
                Err(e) => return Err(self.delta_err(e.into())),
            }
        }
        Ok(out)
    }

    /// Removes (or with `dry_run`, lists) the unreferenced files older than `retention_hours`.
    pub async fn vacuum(
        &mut self,
        retention_hours: u64,
        dry_run: bool,
        force: bool,
    ) -> Result<Vacuumed, TableError> {
        let (table, metrics) = self
            .vacuum_builder(retention_hours, dry_run, force)
            .await
            .map_err(|e| self.delta_err(e))?;
        if !dry_run {
            self.delta = table;
        }
        Ok(Vacuumed {
            table: self.root.display().to_string(),
            dry_run,
            files: metrics.files_deleted,
        })
    }

    async fn vacuum_builder(
        &self,
        retention_hours: u64,
        dry_run: bool,
        force: bool,
    ) -> Result<
        (
            deltalake::DeltaTable,
            deltalake::operations::vacuum::VacuumMetrics,
        ),
        deltalake::DeltaTableError,
    > {
        let hours = i64::try_from(retention_hours).unwrap_or(i64::MAX / 3_600_000);
        self.delta
            .clone()
            .vacuum()
            .with_mode(VacuumMode::Full)
            .with_retention_period(chrono::Duration::hours(hours))
            .with_enforce_retention_duration(!force)
            .with_dry_run(dry_run)
            .await
    }
}
