//! Lines of the items of a test file's top-level sequences, such as its cases, for error
//! messages and reports.
//!
//! The YAML parser behind serde does not return positions, so the text is scanned once:
//! the items are found by their place in the sequence, not by searching for their
//! names, and the scan is linear in the size of the file.

/// The line of a top-level key and the lines where the items of its sequence start.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ItemLines {
    /// 1-based line of the key, or of the top-level array.
    pub key: Option<usize>,
    /// 1-based line where each item starts, in order.
    pub items: Vec<usize>,
}

impl ItemLines {
    /// Returns the line of item `index`, or else the line of the key.
    pub fn item(&self, index: usize) -> Option<usize> {
        self.items.get(index).copied().or(self.key)
    }
}

/// Finds the items of the top-level sequence `key`: in a JSON file when `is_json`, else
/// in YAML written in block style. A sequence written in flow style (`[...]`) in YAML
/// gets the key's line only.
pub fn sequence_items(text: &str, is_json: bool, key: &str) -> ItemLines {
    if is_json {
        json_items(text, Some(key))
    } else {
        yaml_items(text, key)
    }
}

fn yaml_items(text: &str, key: &str) -> ItemLines {
    let mut found = ItemLines::default();
    let mut item_indent: Option<usize> = None;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let content = line.trim_start_matches(' ');
        let indent = line.len() - content.len();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }

        if found.key.is_none() {
            if indent == 0
                && let Some(rest) = content.strip_prefix(key).and_then(|r| r.strip_prefix(':'))
            {
                found.key = Some(number);
                let rest = rest.trim();
                if !(rest.is_empty() || rest.starts_with('#')) {
                    return found;
                }
            }
            continue;
        }

        let is_item = content == "-" || content.starts_with("- ");
        match item_indent {
            None if is_item => {
                item_indent = Some(indent);
                found.items.push(number);
            }
            None => return found,
            Some(expected) if indent == expected && is_item => found.items.push(number),
            Some(expected) if indent <= expected => return found,
            Some(_) => {}
        }
    }
    found
}

/// Finds the elements of the array under the top-level `key` of a JSON object, or of the
/// top-level array when `key` is `None`.
pub fn json_items(text: &str, key: Option<&str>) -> ItemLines {
    let mut found = ItemLines::default();
    let mut line = 1;
    let mut depth = 0usize;
    let mut string_start: Option<usize> = None;
    let mut escaped = false;
    let mut key_matched = false;
    let mut colon_seen = false;
    let mut key_line = 1;
    let mut target_depth: Option<usize> = None;
    let mut awaiting_item = false;

    for (at, byte) in text.bytes().enumerate() {
        if byte == b'\n' {
            line += 1;
        }
        if let Some(start) = string_start {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                string_start = None;
                if depth == 1 && target_depth.is_none() && key.is_some() && !colon_seen {
                    key_matched = text.get(start + 1..at) == key;
                }
            }
            continue;
        }
        if byte.is_ascii_whitespace() {
            continue;
        }
        if awaiting_item && Some(depth) == target_depth && byte != b']' {
            found.items.push(line);
            awaiting_item = false;
        }
        match byte {
            b'"' => {
                string_start = Some(at);
                key_line = line;
            }
            b':' if depth == 1 && key_matched => {
                colon_seen = true;
                continue;
            }
            b'[' | b'{' => {
                depth += 1;
                let opens_target = match key {
                    None => depth == 1 && byte == b'[',
                    Some(_) => depth == 2 && byte == b'[' && colon_seen,
                };
                if opens_target && target_depth.is_none() {
                    target_depth = Some(depth);
                    awaiting_item = true;
                    found.key = Some(if key.is_some() { key_line } else { line });
                }
            }
            b']' | b'}' => {
                if Some(depth) == target_depth {
                    return found;
                }
                depth = depth.saturating_sub(1);
            }
            b',' if Some(depth) == target_depth => awaiting_item = true,
            _ => {}
        }
        if byte != b'"' {
            key_matched = false;
        }
        colon_seen = false;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_cases_by_position() {
        let text = "time: x\ncases:\n  - name: a\n    action: a\n\n  # note\n  - name: b\n    expect:\n      - a\nentities: []\n";
        let lines = sequence_items(text, false, "cases");
        assert_eq!(lines.key, Some(2));
        assert_eq!(lines.items, vec![3, 7]);
    }

    #[test]
    fn yaml_items_at_key_indent() {
        let lines = sequence_items(
            "cases:\n- name: a\n- name: b\nx: 1\n- name: c\n",
            false,
            "cases",
        );
        assert_eq!(lines.items, vec![2, 3]);
    }

    #[test]
    fn json_cases_by_position() {
        let text = "{\"name\": \"cases\", \"x\": {\"cases\": [1]},\n \"cases\": [\n  {\"name\": \"a,]\"},\n  {\"name\": \"b\"}\n ]}";
        let lines = sequence_items(text, true, "cases");
        assert_eq!(lines.key, Some(2));
        assert_eq!(lines.items, vec![3, 4]);
    }

    #[test]
    fn json_top_level_array() {
        let lines = json_items("[\n {\"a\": [1, 2]},\n {}\n]", None);
        assert_eq!(lines.key, Some(1));
        assert_eq!(lines.items, vec![2, 3]);
    }
}
