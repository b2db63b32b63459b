//! A hash of the bundle's files as they are on disk, computed without parsing them. Hot
//! reload compares two fingerprints to tell whether files changed: before and after a
//! load (a file caught in the middle of a write), and between two scans in poll mode.

use std::collections::HashSet;
use std::io::Read as _;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::config::BundleConfig;

/// Maximum folder nesting that a fingerprint follows, as deep as the loader reads.
const MAX_DEPTH: usize = super::MAX_FOLDER_DEPTH + 1;

/// The hash of the names, kinds and contents of every file under the bundle's paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint([u8; 32]);

/// Computes the fingerprint of every path that [`BundleConfig::paths`] lists. A folder
/// contributes its visible entries, recursively and through symlinks, as the loader reads
/// them. Every regular file is read whole, so the cost grows with the size of the bundle.
///
/// It never fails: a path that cannot be read contributes the kind of its error, so it
/// shows as a change when it becomes readable.
pub fn fingerprint(config: &BundleConfig) -> Fingerprint {
    let mut hasher = Sha256::new();
    let mut seen_folders = HashSet::new();
    for path in config.paths() {
        add_path(&mut hasher, path, 0, &mut seen_folders);
    }
    Fingerprint(hasher.finalize().into())
}

fn add_path(
    hasher: &mut Sha256,
    path: &Path,
    depth: usize,
    seen_folders: &mut HashSet<std::path::PathBuf>,
) {
    add_field(hasher, path.as_os_str().as_encoded_bytes());
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(err) => {
            add_field(hasher, format!("error {:?}", err.kind()).as_bytes());
            return;
        }
    };

    if metadata.is_file() {
        add_file(hasher, path);
    } else if metadata.is_dir() {
        add_folder(hasher, path, depth, seen_folders);
    } else {
        // FIFOs, sockets and devices are never opened: reading one can block forever.
        add_field(hasher, b"special");
    }
}

fn add_file(hasher: &mut Sha256, path: &Path) {
    let mut contents = Vec::new();
    let read = std::fs::File::open(path).and_then(|mut file| file.read_to_end(&mut contents));
    match read {
        Ok(_) => {
            add_field(hasher, b"file");
            add_field(hasher, &contents);
        }
        Err(err) => add_field(hasher, format!("error {:?}", err.kind()).as_bytes()),
    }
}

fn add_folder(
    hasher: &mut Sha256,
    path: &Path,
    depth: usize,
    seen_folders: &mut HashSet<std::path::PathBuf>,
) {
    add_field(hasher, b"folder");
    // A folder reached twice, through a symlink loop or two links, counts once.
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    if depth > MAX_DEPTH || !seen_folders.insert(real) {
        return;
    }
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(err) => {
            add_field(hasher, format!("error {:?}", err.kind()).as_bytes());
            return;
        }
    };

    // Hidden entries are skipped, as the loader skips them; a Kubernetes `..data` swap
    // still shows, because the visible links then lead to other contents.
    let mut names: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.file_name())
        .filter(|name| !name.to_string_lossy().starts_with('.'))
        .collect();
    names.sort();
    for name in names {
        add_path(hasher, &path.join(name), depth + 1, seen_folders);
    }
}

/// Adds a length-prefixed field, so that two different sequences never hash alike.
fn add_field(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> BundleConfig {
        BundleConfig::new(
            dir.join("policies"),
            dir.join("schema.cedarschema"),
            dir.join("entities.json"),
        )
    }

    #[test]
    fn fingerprint_follows_contents_not_hidden_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("policies")).unwrap();
        std::fs::write(dir.path().join("policies/a.cedar"), "one").unwrap();
        std::fs::write(dir.path().join("schema.cedarschema"), "").unwrap();
        let config = config(dir.path());
        let first = fingerprint(&config);
        assert_eq!(fingerprint(&config), first);

        std::fs::write(dir.path().join("policies/.a.cedar.swp"), "swap").unwrap();
        assert_eq!(fingerprint(&config), first, "hidden files do not count");

        std::fs::write(dir.path().join("policies/a.cedar"), "two").unwrap();
        let changed = fingerprint(&config);
        assert_ne!(changed, first, "a new content counts");

        std::fs::write(dir.path().join("policies/a.cedar"), "one").unwrap();
        assert_eq!(fingerprint(&config), first, "the old content again");

        std::fs::write(dir.path().join("entities.json"), "[]").unwrap();
        assert_ne!(fingerprint(&config), first, "a file that appears counts");
    }

    #[cfg(unix)]
    #[test]
    fn fingerprint_survives_symlink_loop() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("policies")).unwrap();
        std::os::unix::fs::symlink("..", dir.path().join("policies/up")).unwrap();
        let config = config(dir.path());
        assert_eq!(fingerprint(&config), fingerprint(&config));
    }
}
