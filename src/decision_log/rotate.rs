//! A log file that is rotated by size: `decisions.log` is renamed to `decisions.log.1`,
//! `.1` to `.2` and so on, and the oldest beyond the configured count is removed.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

pub struct RotatingFile {
    path: PathBuf,
    file: BufWriter<File>,
    /// Bytes in the current file.
    size: u64,
    max_bytes: u64,
    /// Rotated files kept.
    max_files: usize,
}

impl RotatingFile {
    /// Opens `path` for appending, creating it and its folder when missing.
    pub fn open(path: &Path, max_bytes: u64, max_files: usize) -> std::io::Result<Self> {
        if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(folder)?;
        }
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_owned(),
            file: BufWriter::new(file),
            size,
            max_bytes,
            max_files,
        })
    }

    /// Writes one line, rotating first when it would take the file past the size limit.
    /// A line longer than the limit gets a file of its own.
    pub fn write_line(&mut self, line: &str) -> std::io::Result<()> {
        let length = line.len() as u64 + 1;
        if self.size > 0 && self.size + length > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(line.as_bytes())?;
        self.file.write_all(b"\n")?;
        self.size += length;
        Ok(())
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.file.flush()?;
        if self.max_files == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            for index in (1..self.max_files).rev() {
                let from = self.numbered(index);
                if from.exists() {
                    std::fs::rename(&from, self.numbered(index + 1))?;
                }
            }
            std::fs::rename(&self.path, self.numbered(1))?;
        }
        self.file = BufWriter::new(open_append(&self.path)?);
        self.size = 0;
        Ok(())
    }

    fn numbered(&self, index: usize) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{index}"));
        PathBuf::from(name)
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_and_keeps_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/decisions.log");
        let mut file = RotatingFile::open(&path, 10, 2).unwrap();
        // Each line is 5 bytes with its newline, so two fit in a file.
        for line in ["aaaa", "bbbb", "cccc", "dddd", "eeee", "ffff", "gggg"] {
            file.write_line(line).unwrap();
        }
        file.flush().unwrap();

        let read = |name: &str| std::fs::read_to_string(dir.path().join("logs").join(name));
        assert_eq!(read("decisions.log").unwrap(), "gggg\n");
        assert_eq!(read("decisions.log.1").unwrap(), "eeee\nffff\n");
        assert_eq!(read("decisions.log.2").unwrap(), "cccc\ndddd\n");
        assert!(
            read("decisions.log.3").is_err(),
            "only two rotated files are kept"
        );
    }

    #[test]
    fn appends_to_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.log");
        std::fs::write(&path, "old\n").unwrap();
        let mut file = RotatingFile::open(&path, 1000, 1).unwrap();
        file.write_line("new").unwrap();
        file.flush().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old\nnew\n");
    }
}
