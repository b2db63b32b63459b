//! Limits on the files that `cedargate test` reads, checked before any parser runs, so a
//! huge or deeply nested file fails fast with a clear error instead of using unbounded
//! memory or time.

use std::io::Read;
use std::path::Path;

use super::FileError;

/// Largest file, in bytes, that `cedargate test` reads: test files and the entities files
/// that `run-tests` files name (16 MiB).
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Deepest nesting of collections (mappings, sequences, objects, arrays) in a test file.
/// The YAML and JSON parsers stop at the same depth, but the YAML parser takes time that
/// grows with the square of the depth before it gets there.
pub const MAX_NESTING: usize = 128;

/// Reads a regular file of at most [`MAX_FILE_BYTES`] as UTF-8 text. The read itself is
/// capped too, because the file can grow after its size was checked.
pub fn read_bounded(path: &Path) -> Result<String, FileError> {
    let failed =
        |err: std::io::Error| FileError::new(path, None, format!("failed to read file: {err}"));
    let metadata = std::fs::metadata(path).map_err(failed)?;
    if !metadata.is_file() {
        return Err(FileError::new(
            path,
            None,
            "not a regular file; give test files or folders of them",
        ));
    }
    if metadata.len() > MAX_FILE_BYTES {
        return Err(too_large(path, metadata.len()));
    }

    let file = std::fs::File::open(path).map_err(failed)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(failed)?;
    let read = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if read > MAX_FILE_BYTES {
        return Err(too_large(path, read));
    }

    String::from_utf8(bytes).map_err(|err| {
        let offset = err.utf8_error().valid_up_to();
        let valid = err.as_bytes().get(..offset).unwrap_or_default();
        let line = valid.iter().filter(|&&byte| byte == b'\n').count() + 1;
        FileError::new(
            path,
            Some(line),
            format!("invalid UTF-8 at byte offset {offset}; save the file as UTF-8"),
        )
    })
}

fn too_large(path: &Path, size: u64) -> FileError {
    FileError::new(
        path,
        None,
        format!(
            "file is too large: {size} bytes or more, but at most {MAX_FILE_BYTES} bytes (16 MiB) are read; split it into several files"
        ),
    )
}

/// Rejects YAML or JSON text whose collections nest deeper than [`MAX_NESTING`], with the
/// line where the limit is passed.
///
/// The scan is linear and approximate: it counts flow collections (`[`, `{`) that start a
/// value outside quoted strings and comments, plus the levels of block indentation,
/// including compact sequence entries such as `- - a`. Each counted level is a real level
/// of the document, so a file within the parsers' own limit of 128 passes this scan.
/// NOTE: a plain scalar continued on a more indented line counts one extra level.
pub fn check_nesting(path: &Path, text: &str) -> Result<(), FileError> {
    let mut scanner = NestingScanner::default();
    for (index, line) in text.lines().enumerate() {
        let depth = scanner.scan_line(line);
        if depth > MAX_NESTING {
            return Err(FileError::new(
                path,
                Some(index + 1),
                format!(
                    "collections are nested more than {MAX_NESTING} levels deep; flatten the data"
                ),
            ));
        }
    }
    Ok(())
}

#[derive(Debug, Default)]
struct NestingScanner {
    /// Indentation columns of the open block collections.
    indents: Vec<usize>,
    /// Open `[` and `{`.
    flow_depth: usize,
    quote: Option<u8>,
    /// Indentation of the line that opened a block scalar (`|` or `>`), whose more
    /// indented lines are text.
    block_scalar: Option<usize>,
}

impl NestingScanner {
    /// Scans one line and returns the deepest nesting seen on it.
    fn scan_line(&mut self, line: &str) -> usize {
        let bytes = line.as_bytes();
        let indent = bytes.iter().take_while(|&&byte| byte == b' ').count();
        let rest = bytes.get(indent..).unwrap_or_default();
        if let Some(parent) = self.block_scalar {
            if rest.is_empty() || indent > parent {
                return 0;
            }
            self.block_scalar = None;
        }

        let mut position = indent;
        if self.quote.is_none() && self.flow_depth == 0 {
            if rest.is_empty() || rest.first() == Some(&b'#') {
                return 0;
            }
            if rest.starts_with(b"---") || rest.starts_with(b"...") {
                self.indents.clear();
            }
            while self.indents.last().is_some_and(|&open| open >= indent) {
                self.indents.pop();
            }
            // A line that starts with `[` or `{` is a flow collection, counted below, inside
            // the block collection that is already open.
            if !matches!(rest.first(), Some(b'[' | b'{')) {
                self.indents.push(indent);
            }
            // Compact entries (`- - a`, `? - a`): each indicator after the first opens
            // another collection on the same line.
            let mut first = true;
            while matches!(bytes.get(position), Some(b'-' | b'?'))
                && matches!(bytes.get(position + 1), Some(b' '))
            {
                if !first {
                    self.indents.push(position);
                }
                first = false;
                position += 2;
                while bytes.get(position) == Some(&b' ') {
                    position += 1;
                }
            }
        }

        let mut deepest = self.indents.len() + self.flow_depth;
        let mut previous: Option<u8> = None;
        let mut space_since_previous = true;
        let mut iter = bytes.iter().enumerate().skip(position).peekable();
        while let Some((at, &byte)) = iter.next() {
            if let Some(quote) = self.quote {
                if byte == b'\\' && quote == b'"' {
                    iter.next();
                } else if byte == quote {
                    if quote == b'\'' && iter.peek().is_some_and(|(_, next)| **next == b'\'') {
                        iter.next();
                    } else {
                        self.quote = None;
                        previous = Some(byte);
                        space_since_previous = false;
                    }
                }
                continue;
            }
            if byte == b' ' || byte == b'\t' {
                space_since_previous = true;
                continue;
            }
            let in_flow = self.flow_depth > 0;
            let value_start = match previous {
                None => true,
                Some(b'[' | b'{' | b',') => in_flow,
                Some(b':') => in_flow || space_since_previous,
                Some(b'-' | b'?') => !in_flow && space_since_previous,
                Some(_) => false,
            };
            match byte {
                b'#' if space_since_previous => break,
                b'"' | b'\'' if value_start => self.quote = Some(byte),
                b'[' | b'{' if value_start || in_flow => {
                    self.flow_depth += 1;
                    deepest = deepest.max(self.indents.len() + self.flow_depth);
                }
                b']' | b'}' if in_flow => self.flow_depth -= 1,
                b'|' | b'>' if value_start && !in_flow => {
                    let header = bytes.get(at + 1..).unwrap_or_default();
                    let header_end = header
                        .iter()
                        .position(|&b| b == b'#')
                        .unwrap_or(header.len());
                    let only_indicators = header
                        .get(..header_end)
                        .unwrap_or_default()
                        .iter()
                        .all(|&b| b == b' ' || b == b'+' || b == b'-' || b.is_ascii_digit());
                    if only_indicators {
                        self.block_scalar = Some(indent);
                        break;
                    }
                }
                _ => {}
            }
            previous = Some(byte);
            space_since_previous = false;
        }
        deepest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth(text: &str) -> usize {
        let mut scanner = NestingScanner::default();
        text.lines()
            .map(|line| scanner.scan_line(line))
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn flow_nesting_counted() {
        assert_eq!(depth("a: [[[1]]]"), 4);
        assert_eq!(depth("{\"a\":[{\"b\":[]}]}"), 4);
    }

    #[test]
    fn brackets_in_strings_and_scalars_ignored() {
        assert_eq!(depth("a: \"[[[[\"\nb: '{{{{'\nc: x[[[[\n"), 1);
        assert_eq!(depth("a: [\"]]]]\", 'it''s [[']\n"), 2);
        assert_eq!(depth("a: b # [[[[\n"), 1);
    }

    #[test]
    fn block_nesting_counted() {
        assert_eq!(depth("a:\n  b:\n    c: 1\n"), 3);
        assert_eq!(depth("- - - a\n"), 3);
        assert_eq!(depth("- [a]\n"), 2);
        assert_eq!(depth("a:\n  b: 1\nc: 2\n"), 2);
    }

    #[test]
    fn block_scalar_lines_skipped() {
        assert_eq!(depth("a: |\n  x\n    [[[[\n      y\nb: 1\n"), 1);
    }
}
