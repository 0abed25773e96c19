//! Output: aligned tables for people, JSON and YAML for scripts, and byte sizes.
//!
//! The YAML emitter is small and covers exactly what JSON values need (maps, sequences,
//! scalars); strings that YAML could read as something else are double-quoted in JSON
//! syntax, which YAML accepts as its double-quoted form.

use serde::Serialize;
use serde_json::Value;

/// The output format chosen with `-o`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// Pretty-printed JSON.
    Json,
    /// YAML.
    Yaml,
}

/// Prints `value` as JSON or YAML, or `table` for people. The value goes through
/// `serde_json::Value` first, so object keys print sorted whatever the field order of the
/// type.
pub fn emit<T: Serialize + ?Sized>(format: Format, value: &T, table: impl FnOnce() -> String) {
    let text = match format {
        Format::Table => table(),
        Format::Json => serde_json::to_string_pretty(&json_of(value)).unwrap_or_default() + "\n",
        Format::Yaml => to_yaml(&json_of(value)),
    };
    write_stdout(text.as_bytes());
}

/// A value as JSON (`null` if it cannot be: only maps with non-string keys fail, and the
/// API's documents have none).
pub fn json_of<T: Serialize + ?Sized>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// Writes to standard output, ending quietly when the reader has gone (`tgtctl ... | head`):
/// a closed pipe is not an error worth a panic.
pub fn write_stdout(bytes: &[u8]) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(bytes).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write the output: {e}");
        std::process::exit(1);
    }
}

/// Columns separated by two spaces, headers in capitals as given.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, c) in cells.enumerate() {
            if i > 0 {
                l.push_str("  ");
            }
            l.push_str(c);
            let pad = widths
                .get(i)
                .copied()
                .unwrap_or(0)
                .saturating_sub(c.chars().count());
            l.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().copied());
    for r in rows {
        line(&mut r.iter().map(String::as_str));
    }
    out
}

/// `key: value` lines with the keys aligned.
pub fn fields(rows: &[(&str, String)]) -> String {
    let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("{k:<w$}  {v}\n"))
        .collect()
}

/// A scalar for a table cell: strings bare, absent values as `-`.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// An optional value for a table cell: absent as `-`.
pub fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// `yes` or `no`.
pub fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

/// Every field of a document as aligned `key  value` lines, keys sorted (see [`fields`]).
pub fn document_fields<T: Serialize + ?Sized>(value: &T) -> String {
    let v = json_of(value);
    let rows: Vec<(&str, String)> = v
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, x)| (k.as_str(), cell(x)))
        .collect();
    fields(&rows)
}

/// Bytes in binary units: `1 GiB`, `512 MiB`, `1.5 KiB`, `100 B`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut unit = 0;
    let mut whole = n;
    while whole >= 1024 && unit + 1 < UNITS.len() {
        whole /= 1024;
        unit += 1;
    }
    let scale = 1u64 << (10 * unit);
    if n.is_multiple_of(scale) {
        format!("{} {}", n / scale, UNITS[unit])
    } else {
        // One decimal is enough to tell sizes apart in a table.
        let tenths = (n % scale) * 10 / scale;
        format!("{}.{tenths} {}", n / scale, UNITS[unit])
    }
}

/// Parses `1073741824`, `512M`, `1G`, `1GiB`, `4k` (binary units).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size such as 1073741824, 512M or 1G"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use K, M, G or T)")),
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// A JSON value as a YAML document.
pub fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(m) if !m.is_empty() => yaml_map(m, 0, &mut out),
        Value::Array(a) if !a.is_empty() => yaml_seq(a, 0, &mut out),
        other => {
            out.push_str(&yaml_scalar(other));
            out.push('\n');
        }
    }
    out
}

fn yaml_map(m: &serde_json::Map<String, Value>, indent: usize, out: &mut String) {
    for (k, v) in m {
        out.extend(std::iter::repeat_n(' ', indent));
        out.push_str(&yaml_string(k));
        out.push(':');
        match v {
            Value::Object(c) if !c.is_empty() => {
                out.push('\n');
                yaml_map(c, indent + 2, out);
            }
            Value::Array(a) if !a.is_empty() => {
                out.push('\n');
                yaml_seq(a, indent + 2, out);
            }
            other => {
                out.push(' ');
                out.push_str(&yaml_scalar(other));
                out.push('\n');
            }
        }
    }
}

fn yaml_seq(a: &[Value], indent: usize, out: &mut String) {
    for item in a {
        let nested = match item {
            Value::Object(c) if !c.is_empty() => {
                let mut s = String::new();
                yaml_map(c, indent + 2, &mut s);
                Some(s)
            }
            Value::Array(c) if !c.is_empty() => {
                let mut s = String::new();
                yaml_seq(c, indent + 2, &mut s);
                Some(s)
            }
            _ => None,
        };
        out.extend(std::iter::repeat_n(' ', indent));
        out.push_str("- ");
        match nested {
            // The first line of the nested block goes after the dash; its indent is the
            // dash's width, so the rest of the block lines up under it.
            Some(s) => out.push_str(s.get(indent + 2..).unwrap_or(&s)),
            None => {
                out.push_str(&yaml_scalar(item));
                out.push('\n');
            }
        }
    }
}

fn yaml_scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => yaml_string(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

/// A string plain when YAML reads it back as the same string, else double-quoted.
fn yaml_string(s: &str) -> String {
    let reserved = [
        "true", "false", "null", "yes", "no", "on", "off", "y", "n", "~",
    ];
    let plain = !s.is_empty()
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '/')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._/:@+-,".contains(c))
        && !s.contains(": ")
        && !s.ends_with(':')
        && !reserved.contains(&s.to_ascii_lowercase().as_str());
    if plain {
        s.to_string()
    } else {
        Value::String(s.to_string()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yaml_quotes_what_would_change_meaning() {
        let v = json!({
            "storages": [{"deviceID": 1, "path": "/var/lib/tgt/a.img", "online": true}],
            "iscsiportals": [{"id": 0, "portal": "127.0.0.1:3260"}],
            "iscsitargets": {"iqn.2026-01.io.github.tgt-rs:demo": {"luns": {"1": 1}, "tpgts": {"1": [0, 2]}}},
            "empty": {}, "none": [], "word": "yes", "spaced": "a b"
        });
        let y = to_yaml(&v);
        // serde_json keeps object keys sorted, so the YAML is sorted too.
        let expected = "\
empty: {}
iscsiportals:
  - id: 0
    portal: \"127.0.0.1:3260\"
iscsitargets:
  iqn.2026-01.io.github.tgt-rs:demo:
    luns:
      \"1\": 1
    tpgts:
      \"1\":
        - 0
        - 2
none: []
spaced: \"a b\"
storages:
  - deviceID: 1
    online: true
    path: /var/lib/tgt/a.img
word: \"yes\"
";
        assert_eq!(y, expected);
    }

    #[test]
    fn yaml_nests_sequences_in_sequences() {
        assert_eq!(to_yaml(&json!([[1, 2], "x"])), "- - 1\n  - 2\n- x\n");
    }

    #[test]
    fn sizes_round_trip_through_units() {
        assert_eq!(parse_bytes("1G"), Ok(1 << 30));
        assert_eq!(parse_bytes("512MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("1X").is_err());
        assert!(parse_bytes("G").is_err());
        assert_eq!(bytes(1 << 30), "1 GiB");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(100), "100 B");
    }

    #[test]
    fn table_aligns_columns() {
        let t = table(
            &["ID", "ADDRESS"],
            &[
                vec!["0".into(), "127.0.0.1:3260".into()],
                vec!["10".into(), "*".into()],
            ],
        );
        assert_eq!(t, "ID  ADDRESS\n0   127.0.0.1:3260\n10  *\n");
    }
}
