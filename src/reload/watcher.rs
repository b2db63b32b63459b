//! The file system event watcher (notify): which folders to watch so that every way of
//! changing the bundle raises an event, and which events count.
//!
//! For each bundle path the watcher watches two things. The first is the folder that
//! contains the path, without recursion, so it gets events when the path itself is written,
//! replaced by a rename, deleted, recreated, or swapped through a symlink such as
//! Kubernetes' `..data`. The second, when the path is a folder, is that folder's real
//! location, recursively. The watches are brought up to date before each reload, so a
//! folder that was deleted and recreated, or a symlink that now leads elsewhere, is
//! watched again before the files are read. A change made after that shows as an event.
//!
//! A symlink among the ancestors of a bundle path, such as a deploy's `current ->
//! releases/v2`, is watched in the folder that contains it, so swapping it raises an
//! event too.
//!
//! NOTE: symlinks inside a symlink's target (a `releases` that is itself a link) are not
//! watched. Poll mode and `SIGHUP` see changes to them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};

use crate::config::BundleConfig;

/// Signal from the watcher to the reload task.
#[derive(Debug)]
pub enum WatchSignal {
    /// A file event that can change the bundle.
    Changed,
    /// The watcher stopped working; the reload task falls back to polling.
    Failed(notify::Error),
}

/// A notify watcher over the bundle's paths.
pub struct FileWatcher {
    watcher: RecommendedWatcher,
    /// Watches in place, with the identity of the folder each one was set on.
    watched: Vec<Target>,
    /// Shared with the event handler, which runs on notify's thread.
    filter: Arc<RwLock<EventFilter>>,
}

impl FileWatcher {
    /// Starts a watcher that calls `signal` for each relevant event or failure. No folder
    /// is watched until [`FileWatcher::refresh`].
    pub fn new(signal: impl Fn(WatchSignal) + Send + 'static) -> Result<Self, notify::Error> {
        let filter = Arc::new(RwLock::new(EventFilter::default()));
        let handler_filter = Arc::clone(&filter);
        let handler = move |event: notify::Result<notify::Event>| match event {
            Ok(event) => {
                let relevant = handler_filter
                    .read()
                    .map_or(true, |filter| filter.is_relevant(&event));
                if relevant {
                    signal(WatchSignal::Changed);
                }
            }
            // A full watch table means folders created from now on go unwatched, so events
            // can no longer be trusted.
            Err(err) if matches!(err.kind, notify::ErrorKind::MaxFilesWatch) => {
                signal(WatchSignal::Failed(err));
            }
            // Other errors concern one event, such as a read error on the inotify queue;
            // a reload reads every file anyway.
            Err(err) => {
                tracing::warn!(error = %err, "file watcher error; reloading to be safe");
                signal(WatchSignal::Changed);
            }
        };
        let watcher = RecommendedWatcher::new(handler, notify::Config::default())?;
        Ok(Self {
            watcher,
            watched: Vec::new(),
            filter,
        })
    }

    /// Brings the watches up to date with the bundle's paths as they are on disk now:
    /// new or replaced folders get a watch, watches of folders that are gone or replaced
    /// are removed. Blocks on file I/O.
    ///
    /// Returns an error when a watch could not be set, such as when the inotify watch limit
    /// is reached. A folder that disappears while it is being watched is not an error: the
    /// watch of the folder that contains it reports its return.
    pub fn refresh(&mut self, config: &BundleConfig) -> Result<(), notify::Error> {
        let (targets, filter) = plan(config);
        if let Ok(mut shared) = self.filter.write() {
            *shared = filter;
        }

        let (kept, stale): (Vec<Target>, Vec<Target>) = std::mem::take(&mut self.watched)
            .into_iter()
            .partition(|old| targets.contains(old));
        for old in stale {
            // The watch may be gone already, removed by notify when its folder was deleted.
            let _ = self.watcher.unwatch(&old.path);
            tracing::debug!(path = %old.path.display(), "stopped watching");
        }
        self.watched = kept;

        for target in targets {
            if self.watched.contains(&target) {
                continue;
            }
            if self.watch(&target)? {
                tracing::debug!(path = %target.path.display(), recursive = target.recursive, "watching");
                self.watched.push(target);
            }
        }
        Ok(())
    }

    /// Sets the watch for `target`. Returns `false` when the folder is gone, because the
    /// watch of the folder that contains it reports its return.
    fn watch(&mut self, target: &Target) -> Result<bool, notify::Error> {
        // A subfolder deleted while notify walks the tree fails the whole watch with "not
        // found", although the folder itself is still there; walking again succeeds.
        for _ in 0..WATCH_ATTEMPTS {
            match self.watcher.watch(&target.path, target.mode()) {
                Ok(()) => return Ok(true),
                Err(err) if matches!(err.kind, notify::ErrorKind::PathNotFound) => {
                    if !target.path.is_dir() {
                        return Ok(false);
                    }
                }
                Err(err) => return Err(err),
            }
        }
        Err(notify::Error::generic(&format!(
            "the folder `{}` kept changing while it was being watched",
            target.path.display()
        )))
    }
}

/// How many times a watch is set on a folder whose subfolders keep disappearing.
const WATCH_ATTEMPTS: usize = 3;

/// One folder to watch.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    /// The folder's real path, symlinks resolved.
    path: PathBuf,
    recursive: bool,
    /// Device and inode of the folder, so a folder deleted and recreated under the same
    /// path is watched again.
    identity: Option<(u64, u64)>,
}

impl Target {
    fn new(path: PathBuf, recursive: bool) -> Self {
        let identity = identity(&path);
        Self {
            path,
            recursive,
            identity,
        }
    }

    fn mode(&self) -> RecursiveMode {
        if self.recursive {
            RecursiveMode::Recursive
        } else {
            RecursiveMode::NonRecursive
        }
    }
}

#[cfg(unix)]
fn identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(path)
        .ok()
        .map(|metadata| (metadata.dev(), metadata.ino()))
}

#[cfg(not(unix))]
fn identity(_: &Path) -> Option<(u64, u64)> {
    None
}

/// Decides which events can change the bundle. Everything under a watched bundle folder
/// counts. In a folder that only contains a bundle path, an event counts when it
/// concerns that path, or an entry that the path's symlinks lead through (`..data`).
/// Other files there, such as logs or the config file, do not trigger reloads.
#[derive(Debug, Default)]
struct EventFilter {
    /// Real paths of the bundle folders, watched recursively.
    roots: Vec<PathBuf>,
    /// For each folder watched without recursion, the bundle paths in it.
    entries: HashMap<PathBuf, Vec<Entry>>,
}

#[derive(Debug)]
struct Entry {
    /// The name of the bundle path, or of its first missing ancestor, in the folder.
    name: std::ffi::OsString,
    /// The bundle path as configured.
    path: PathBuf,
}

impl EventFilter {
    fn is_relevant(&self, event: &notify::Event) -> bool {
        // Reading files, the reload's own reads included, changes nothing. Closing a file
        // after writing it ends a write, so that one counts.
        if let EventKind::Access(kind) = event.kind
            && kind != AccessKind::Close(AccessMode::Write)
        {
            return false;
        }
        // Events without a path, such as a queue overflow, may hide any change.
        event.paths.is_empty() || event.paths.iter().any(|path| self.concerns(path))
    }

    fn concerns(&self, path: &Path) -> bool {
        if self.roots.iter().any(|root| path.starts_with(root)) {
            return true;
        }
        // The watched folder itself was deleted or moved.
        if self.entries.contains_key(path) {
            return true;
        }
        let (Some(folder), Some(name)) = (path.parent(), path.file_name()) else {
            return false;
        };
        let Some(entries) = self.entries.get(folder) else {
            return false;
        };
        entries
            .iter()
            .any(|entry| entry.name == name || leads_through(&entry.path, path))
    }
}

/// Returns whether resolving `bundle_path` passes through `entry`, as a file symlinked
/// into a Kubernetes ConfigMap's `..data` does once `..data` points to a new folder.
fn leads_through(bundle_path: &Path, entry: &Path) -> bool {
    match (
        std::fs::canonicalize(bundle_path),
        std::fs::canonicalize(entry),
    ) {
        (Ok(resolved), Ok(entry)) => resolved.starts_with(entry),
        _ => false,
    }
}

/// Lists the folders to watch for the bundle's paths as they are on disk now, and the
/// event filter that goes with them.
fn plan(config: &BundleConfig) -> (Vec<Target>, EventFilter) {
    let mut roots: Vec<PathBuf> = Vec::new();
    let mut entries: HashMap<PathBuf, Vec<Entry>> = HashMap::new();
    for path in config.paths() {
        if let Ok(real) = std::fs::canonicalize(path)
            && real.is_dir()
        {
            roots.push(real);
        }
        if let Some((folder, name)) = existing_parent(path) {
            entries.entry(folder).or_default().push(Entry {
                name,
                path: path.to_owned(),
            });
        }
        // A symlink higher up, such as a deploy's `current -> releases/v2`, is swapped by a
        // rename in the folder that contains it.
        for (folder, name) in linked_ancestors(path) {
            entries.entry(folder).or_default().push(Entry {
                name,
                path: path.to_owned(),
            });
        }
    }

    // A folder inside another watched one is already watched through it. Watching it again
    // without recursion would also stop notify from watching its new subfolders.
    roots.sort();
    roots.dedup();
    let nested: Vec<PathBuf> = roots
        .iter()
        .filter(|root| {
            roots
                .iter()
                .any(|other| other != *root && root.starts_with(other))
        })
        .cloned()
        .collect();
    roots.retain(|root| !nested.contains(root));
    entries.retain(|folder, _| !roots.iter().any(|root| folder.starts_with(root)));

    let mut targets: Vec<Target> = roots
        .iter()
        .map(|root| Target::new(root.clone(), true))
        .collect();
    targets.extend(
        entries
            .keys()
            .map(|folder| Target::new(folder.clone(), false)),
    );
    (targets, EventFilter { roots, entries })
}

/// Returns, for each ancestor of `path` that is a symlink, the real path of the folder
/// that contains it and the symlink's name.
fn linked_ancestors(path: &Path) -> Vec<(PathBuf, std::ffi::OsString)> {
    let Ok(absolute) = std::path::absolute(path) else {
        return Vec::new();
    };
    absolute
        .ancestors()
        .skip(1)
        .filter(|ancestor| {
            ancestor
                .symlink_metadata()
                .is_ok_and(|metadata| metadata.file_type().is_symlink())
        })
        .filter_map(|link| {
            let folder = std::fs::canonicalize(link.parent()?).ok()?;
            Some((folder, link.file_name()?.to_owned()))
        })
        .collect()
}

/// Returns the nearest existing folder above `path`, by its real path, with the name of the
/// entry in it that leads to `path`. A missing path's parents may be missing too, such as
/// a whole bundle folder deleted before it is recreated.
fn existing_parent(path: &Path) -> Option<(PathBuf, std::ffi::OsString)> {
    let absolute = std::path::absolute(path).ok()?;
    let mut child = absolute.as_path();
    loop {
        let parent = child.parent()?;
        if let Ok(real) = std::fs::canonicalize(parent)
            && real.is_dir()
        {
            return Some((real, child.file_name()?.to_owned()));
        }
        child = parent;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> BundleConfig {
        BundleConfig::new(
            dir.join("policies"),
            dir.join("schema/crm.cedarschema"),
            dir.join("entities"),
        )
    }

    fn event(path: &Path) -> notify::Event {
        notify::Event::new(EventKind::Create(notify::event::CreateKind::File)).add_path(path.into())
    }

    #[test]
    fn plan_watches_folders_and_parents() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        for folder in ["policies", "schema", "entities"] {
            std::fs::create_dir(root.join(folder)).unwrap();
        }
        let (targets, filter) = plan(&config(&root));

        let mut watched: Vec<(PathBuf, bool)> = targets
            .into_iter()
            .map(|target| (target.path, target.recursive))
            .collect();
        watched.sort();
        assert_eq!(
            watched,
            vec![
                (root.clone(), false),
                (root.join("entities"), true),
                (root.join("policies"), true),
                (root.join("schema"), false),
            ]
        );

        assert!(filter.is_relevant(&event(&root.join("policies/new.cedar"))));
        assert!(filter.is_relevant(&event(&root.join("schema/crm.cedarschema"))));
        assert!(filter.is_relevant(&event(&root.join("policies"))));
        assert!(!filter.is_relevant(&event(&root.join("schema/notes.txt"))));
        assert!(!filter.is_relevant(&event(&root.join("server.log"))));
        assert!(!filter.is_relevant(&event(&root.join("cedargate.toml"))));
    }

    #[test]
    fn plan_missing_folder_watches_ancestor() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let (targets, filter) = plan(&config(&root));

        let watched: Vec<&Path> = targets.iter().map(|t| t.path.as_path()).collect();
        assert_eq!(watched, vec![root.as_path()]);
        assert!(filter.is_relevant(&event(&root.join("schema"))));
        assert!(filter.is_relevant(&event(&root.join("policies"))));
        assert!(!filter.is_relevant(&event(&root.join("other"))));
    }

    #[test]
    fn reads_are_not_relevant() {
        let filter = EventFilter::default();
        let read = notify::Event::new(EventKind::Access(AccessKind::Close(AccessMode::Read)));
        let written = notify::Event::new(EventKind::Access(AccessKind::Close(AccessMode::Write)));
        assert!(!filter.is_relevant(&read));
        assert!(filter.is_relevant(&written));
    }
}
