//! A file written under a temporary name beside its target and renamed into place, so that a reader
//! never sees half a file; and the clean-up of temporary files that exporters killed mid-write left.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How old another temporary file of the same target must be to count as litter. An export writes its
/// file in seconds, so one untouched for an hour belongs to an exporter that died before its `Drop`
/// could remove it (SIGKILL, the OOM killer, a node lost); a younger one may be a live replica's.
pub(super) const STALE_AFTER: Duration = Duration::from_secs(60 * 60);

/// A file written and fsynced under a temporary name in the target's folder (same file system, so the
/// rename is atomic); removed when dropped unless renamed into place.
pub(super) struct StagedFile {
    tmp: PathBuf,
    renamed: bool,
}

impl StagedFile {
    /// Creates the temporary file for `path`, first removing stale ones of the same target.
    pub(super) fn create(path: &Path) -> std::io::Result<(std::fs::File, Self)> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let target = path.file_name().and_then(|n| n.to_str()).unwrap_or("export");
        remove_stale_temps(dir, target, SystemTime::now());
        let tmp = dir.join(format!(".{target}.{}-{:08x}.tmp", std::process::id(), rand::random::<u32>()));
        Ok((std::fs::File::create(&tmp)?, Self { tmp, renamed: false }))
    }

    pub(super) fn path(&self) -> &Path {
        &self.tmp
    }

    pub(super) fn rename_to(mut self, path: &Path) -> std::io::Result<()> {
        std::fs::rename(&self.tmp, path)?;
        self.renamed = true;
        Ok(())
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if !self.renamed {
            // Best effort: a leftover is only litter (hidden, never read), and the next export of
            // this target removes it once stale.
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Whether `name` is a temporary file of `target`, as [`StagedFile::create`] names them:
/// `.{target}.{pid}-{8 hex digits}.tmp`.
fn is_temp_of(name: &str, target: &str) -> bool {
    let Some(rest) = name.strip_prefix('.').and_then(|n| n.strip_prefix(target)) else { return false };
    let Some(tag) = rest.strip_prefix('.').and_then(|r| r.strip_suffix(".tmp")) else { return false };
    let Some((pid, random)) = tag.split_once('-') else { return false };
    !pid.is_empty()
        && pid.bytes().all(|b| b.is_ascii_digit())
        && random.len() == 8
        && random.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether a temporary file last modified `age` ago is litter. An unknown age (a clock stepped
/// backwards, a file system without times) never is.
fn is_stale(age: Option<Duration>) -> bool {
    age.is_some_and(|age| age > STALE_AFTER)
}

/// Removes `target`'s stale temporary files from `dir`; best effort (a failure only leaves litter).
/// Only names that match are looked at further: the folder holds one file per date exported.
fn remove_stale_temps(dir: &Path, target: &str, now: SystemTime) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if !entry.file_name().to_str().is_some_and(|name| is_temp_of(name, target)) {
            continue;
        }
        let age = entry.metadata().and_then(|m| m.modified()).ok().and_then(|at| now.duration_since(at).ok());
        if is_stale(age) && std::fs::remove_file(entry.path()).is_ok() {
            tracing::info!(file = %entry.path().display(), "removed a stale temporary export file");
        }
    }
}

/// Whether two files hold the same bytes, compared a chunk at a time.
pub(super) fn same_contents(a: &Path, b: &Path) -> std::io::Result<bool> {
    use std::io::Read;
    const CHUNK: u64 = 64 * 1024;
    let (a, b) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    if a.metadata()?.len() != b.metadata()?.len() {
        return Ok(false);
    }
    let (mut a, mut b) = (std::io::BufReader::new(a), std::io::BufReader::new(b));
    let (mut chunk_a, mut chunk_b) = (Vec::new(), Vec::new());
    loop {
        chunk_a.clear();
        chunk_b.clear();
        let read = a.by_ref().take(CHUNK).read_to_end(&mut chunk_a)?;
        b.by_ref().take(CHUNK).read_to_end(&mut chunk_b)?;
        if chunk_a != chunk_b {
            return Ok(false);
        }
        if read == 0 {
            return Ok(true);
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::io::Write;

    pub(crate) fn temp_dir(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!("props-export-{tag}-{}", rand::random::<u32>()))
    }

    pub(crate) fn stage(path: &Path, bytes: &[u8]) -> StagedFile {
        let (mut file, staged) = StagedFile::create(path).unwrap();
        file.write_all(bytes).unwrap();
        staged
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        names
    }

    #[test]
    fn a_staged_file_replaces_the_target_and_leaves_no_temp_files() {
        let dir = temp_dir("rename");
        let path = dir.join("2024-04-22.json");
        stage(&path, b"{\"a\":1}").rename_to(&path).unwrap();
        stage(&path, b"{\"a\":2}").rename_to(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"a\":2}");
        // One that is not renamed (a newer generation won) is removed.
        drop(stage(&path, b"{\"a\":3}"));
        assert_eq!(names(&dir), ["2024-04-22.json"], "only the target remains");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_the_targets_own_temporary_files_match_and_only_old_ones_are_stale() {
        let target = "2024-04-22.json";
        assert!(is_temp_of(".2024-04-22.json.4242-0badcafe.tmp", target));
        for other in [
            "2024-04-22.json",                     // the target itself
            ".2024-04-23.json.4242-0badcafe.tmp",  // another date's
            ".2024-04-22.json.x42-0badcafe.tmp",   // not a pid
            ".2024-04-22.json.4242-badcafe.tmp",   // 7 hex digits
            ".2024-04-22.json.4242-0badcafe.tmp~", // not ending in .tmp
            ".2024-04-22.json.-0badcafe.tmp",      // no pid
            "notes.tmp",
        ] {
            assert!(!is_temp_of(other, target), "{other}");
        }
        assert!(is_stale(Some(STALE_AFTER + Duration::from_secs(1))));
        assert!(!is_stale(Some(STALE_AFTER)), "young");
        assert!(!is_stale(None), "age unknown");
    }

    #[test]
    fn creating_a_staged_file_removes_the_targets_stale_temporary_files() {
        let dir = temp_dir("stale");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("2024-04-22.json");
        let aged = |name: &str, age: Duration| {
            let file = std::fs::File::create(dir.join(name)).unwrap();
            file.set_modified(SystemTime::now() - age).unwrap();
        };
        // A killed exporter's file, a live replica's, and another date's old one.
        aged(".2024-04-22.json.17-00000001.tmp", STALE_AFTER * 2);
        aged(".2024-04-22.json.18-00000002.tmp", Duration::from_secs(5));
        aged(".2024-04-23.json.19-00000003.tmp", STALE_AFTER * 2);
        stage(&path, b"{}").rename_to(&path).unwrap();
        assert_eq!(
            names(&dir),
            [".2024-04-22.json.18-00000002.tmp", ".2024-04-23.json.19-00000003.tmp", "2024-04-22.json"]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn compares_files_byte_for_byte() {
        let dir = temp_dir("same");
        std::fs::create_dir_all(&dir).unwrap();
        let long: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut changed = long.clone();
        changed[150_000] ^= 1;
        for (name, bytes) in [("a", &long), ("b", &long), ("c", &changed), ("d", &long[..1000].to_vec())] {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
        let same = |a: &str, b: &str| same_contents(&dir.join(a), &dir.join(b)).unwrap();
        assert!(same("a", "b"));
        assert!(!same("a", "c"), "a byte differs in a later chunk");
        assert!(!same("a", "d"), "different lengths");
        assert!(same_contents(&dir.join("a"), &dir.join("missing")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
