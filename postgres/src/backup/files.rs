//! Backup files in a directory: which one is the newest, and pruning to a retention count.
//!
//! Scheduled backups are written as `backup-<UTC timestamp>.rdb` (`backup-20261121T030000Z.rdb`),
//! so names sort by time. Only files of that shape are ever picked or deleted: anything else a
//! person put in the directory is left alone.

use std::io;
use std::path::{Path, PathBuf};

/// Prefix of scheduled backup file names.
pub const PREFIX: &str = "backup-";
/// Suffix of backup file names.
pub const SUFFIX: &str = ".rdb";

/// Whether a file name is a scheduled backup's.
pub fn is_backup_name(name: &str) -> bool {
    name.len() > PREFIX.len() + SUFFIX.len() && name.starts_with(PREFIX) && name.ends_with(SUFFIX)
}

/// The scheduled backups in `dir`, newest first.
pub fn backups_in(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if entry.file_type()?.is_file() && name.to_str().is_some_and(is_backup_name) {
            found.push(entry.path());
        }
    }
    found.sort();
    found.reverse();
    Ok(found)
}

/// A restore's input: a file as given, or for a directory its newest scheduled backup. A
/// damaged newest backup is refused later rather than silently replaced by an older one: the
/// person restoring chooses a file explicitly then.
pub fn resolve_input(path: &Path) -> io::Result<PathBuf> {
    if !path.is_dir() {
        return Ok(path.to_path_buf());
    }
    backups_in(path)?.into_iter().next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "no {PREFIX}*{SUFFIX} backup in directory {}",
                path.display()
            ),
        )
    })
}

/// Delete all but the `keep` newest scheduled backups in `dir`; `keep` is at least 1, so the
/// backup just written is never deleted. Returns what was deleted.
pub fn prune(dir: &Path, keep: usize) -> io::Result<Vec<PathBuf>> {
    let old: Vec<PathBuf> = backups_in(dir)?.into_iter().skip(keep.max(1)).collect();
    for file in &old {
        std::fs::remove_file(file)?;
    }
    Ok(old)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, name: &str) {
        std::fs::write(dir.join(name), b"x").unwrap();
    }

    #[test]
    fn newest_backup_of_a_directory_and_pruning() {
        let dir = tempfile::tempdir().unwrap();
        for n in [
            "backup-20261119T030000Z.rdb",
            "backup-20261121T030000Z.rdb",
            "backup-20261120T030000Z.rdb",
            "notes.txt",
            "manual.rdb",
        ] {
            touch(dir.path(), n);
        }
        let newest = resolve_input(dir.path()).unwrap();
        assert_eq!(newest.file_name().unwrap(), "backup-20261121T030000Z.rdb");
        let file = dir.path().join("manual.rdb");
        assert_eq!(resolve_input(&file).unwrap(), file);

        let deleted = prune(dir.path(), 2).unwrap();
        assert_eq!(
            deleted,
            vec![dir.path().join("backup-20261119T030000Z.rdb")]
        );
        let mut left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "backup-20261120T030000Z.rdb",
                "backup-20261121T030000Z.rdb",
                "manual.rdb",
                "notes.txt"
            ]
        );
        assert_eq!(
            prune(dir.path(), 0).unwrap().len(),
            1,
            "keep 0 still keeps the newest"
        );
    }

    #[test]
    fn a_directory_without_backups_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        touch(dir.path(), "notes.txt");
        let err = resolve_input(dir.path()).unwrap_err();
        assert!(err.to_string().contains("no backup-*.rdb backup"), "{err}");
    }
}
