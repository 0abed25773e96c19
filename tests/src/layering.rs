//! The layering rules of `docs/ARCHITECTURE.md` (section "Invariants"), checked on the
//! sources themselves so that an import across a forbidden edge fails `cargo test`.
//!
//! The edges:
//!
//! * `scsi` (the SPC-4/SBC-3 command layer) imports none of `pdu`, `conn`, `session`,
//!   `backend`, `io`: it knows nothing of iSCSI or of how blocks are stored;
//! * `pdu` and `login` (pure codecs and state machines, RFC 7143 §11 and §6) use no sockets
//!   and no clock: no `tokio::net`, `std::net::Tcp*`/`UdpSocket`, `tokio::time`, `Instant`
//!   or `SystemTime`; callers pass time in;
//! * `controlplane` and `cli` never depend on the data-plane crate `tgt-dataplane`, in their
//!   `Cargo.toml` or their sources; they share only `tgt-proto`.
//!
//! The checker reads Rust source with comments and string literals blanked out, expands
//! `use` trees (`crate::{a, b::c}`), resolves `crate::`, `self::`, `super::` and
//! `tgt_dataplane::` paths against the file's module path, and reports every path whose
//! first module is on the far side of a forbidden edge, with its file and line.

use std::fmt;
use std::path::{Path, PathBuf};

/// Data-plane modules and the crate-root modules they must not name.
pub const FORBIDDEN_IMPORTS: &[(&str, &[&str])] =
    &[("scsi", &["pdu", "conn", "session", "backend", "io"])];

/// Data-plane modules that use no sockets and no clock.
pub const NO_SOCKETS_NO_CLOCK: &[&str] = &["pdu", "login"];

/// Crates (directories of the workspace) that must not depend on the data-plane crate.
pub const NOT_ON_DATAPLANE: &[&str] = &["controlplane", "cli"];

/// One import across a forbidden edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The file, relative to the workspace root when found by [`check_workspace`].
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// The edge crossed, such as `scsi -> backend`.
    pub edge: String,
    /// What was found there, such as `crate::backend::ErrorKind`.
    pub found: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: forbidden edge `{}`: `{}`",
            self.file.display(),
            self.line,
            self.edge,
            self.found
        )
    }
}

/// What [`check_workspace`] looked at and found.
#[derive(Debug, Default)]
pub struct Report {
    /// Every violation, in file order.
    pub violations: Vec<Violation>,
    /// Source files checked per rule scope (`scsi`, `pdu`, `login`, `controlplane`, `cli`),
    /// so a test can tell a clean tree from a scan that found nothing to read.
    pub files_checked: Vec<(String, usize)>,
}

/// Checks every rule on the workspace at `root`.
pub fn check_workspace(root: &Path) -> std::io::Result<Report> {
    let mut report = Report::default();
    let src = root.join("dataplane/src");
    let mut scopes: Vec<&str> = FORBIDDEN_IMPORTS.iter().map(|(m, _)| *m).collect();
    scopes.extend(NO_SOCKETS_NO_CLOCK);
    scopes.sort_unstable();
    scopes.dedup();
    for scope in scopes {
        let mut files = rust_files(&src.join(scope))?;
        let single = src.join(format!("{scope}.rs"));
        if single.is_file() {
            files.push(single);
        }
        files.sort();
        for file in &files {
            let rel = file.strip_prefix(&src).unwrap_or(file);
            let text = std::fs::read_to_string(file)?;
            let shown = file.strip_prefix(root).unwrap_or(file);
            for mut v in check_dataplane_source(rel, &text) {
                v.file = shown.to_path_buf();
                report.violations.push(v);
            }
        }
        report.files_checked.push((scope.to_string(), files.len()));
    }
    for krate in NOT_ON_DATAPLANE {
        let dir = root.join(krate);
        let manifest = dir.join("Cargo.toml");
        let mut count = 0;
        if manifest.is_file() {
            let text = std::fs::read_to_string(&manifest)?;
            let shown = manifest.strip_prefix(root).unwrap_or(&manifest);
            report
                .violations
                .extend(check_manifest(krate, shown, &text));
            count += 1;
        }
        let mut files = Vec::new();
        for sub in ["src", "tests", "benches", "examples"] {
            files.extend(rust_files(&dir.join(sub))?);
        }
        if dir.join("build.rs").is_file() {
            files.push(dir.join("build.rs"));
        }
        files.sort();
        for file in &files {
            let text = std::fs::read_to_string(file)?;
            let shown = file.strip_prefix(root).unwrap_or(file);
            report
                .violations
                .extend(check_foreign_source(krate, shown, &text));
        }
        report
            .files_checked
            .push(((*krate).to_string(), count + files.len()));
    }
    Ok(report)
}

/// Every `.rs` file below `dir` (none when it does not exist).
fn rust_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    if !dir.is_dir() {
        return Ok(out);
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    Ok(out)
}

/// The module path of a data-plane source file from its path below `dataplane/src`:
/// `scsi/sense.rs` is `[scsi, sense]`, `scsi/mod.rs` and `scsi.rs` are `[scsi]`, `lib.rs` is
/// `[]`.
pub fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if let Some(last) = parts.pop() {
        let stem = last.strip_suffix(".rs").unwrap_or(&last).to_string();
        if !matches!(stem.as_str(), "mod" | "lib" | "main") {
            parts.push(stem);
        }
    }
    parts
}

/// Checks one data-plane source file at `rel` (below `dataplane/src`) against the rules of
/// its top module.
pub fn check_dataplane_source(rel: &Path, text: &str) -> Vec<Violation> {
    let module = module_path(rel);
    let Some(top) = module.first() else {
        return Vec::new();
    };
    let forbidden: &[&str] = FORBIDDEN_IMPORTS
        .iter()
        .find(|(m, _)| m == top)
        .map_or(&[], |(_, f)| f);
    let pure = NO_SOCKETS_NO_CLOCK.contains(&top.as_str());
    let code = blank_comments_and_strings(text);
    let tokens = tokenize(&code);
    let mut out: Vec<Violation> = Vec::new();
    let mut push = |line: usize, edge: String, found: String| {
        if !out.iter().any(|v| v.line == line && v.edge == edge) {
            out.push(Violation {
                file: rel.to_path_buf(),
                line,
                edge,
                found,
            });
        }
    };
    for (line, path) in paths(&tokens) {
        let text = path.join("::");
        if let Some(abs) = resolve(&module, &path) {
            if let Some(target) = abs.first() {
                if target != top && forbidden.contains(&target.as_str()) {
                    push(line, format!("{top} -> {target}"), text.clone());
                }
            }
        }
        if pure {
            if let Some(what) = system_path(&path) {
                push(line, format!("{top} -> {what}"), text);
            }
        }
    }
    if pure {
        for t in &tokens {
            if matches!(t.text.as_str(), "Instant" | "SystemTime") {
                push(t.line, format!("{top} -> clock"), t.text.clone());
            }
        }
    }
    out.sort_by_key(|v| v.line);
    out
}

/// Checks a source file of crate `krate` (controlplane, cli) for the data-plane crate.
pub fn check_foreign_source(krate: &str, file: &Path, text: &str) -> Vec<Violation> {
    let code = blank_comments_and_strings(text);
    let mut out = Vec::new();
    for t in tokenize(&code) {
        if t.text == "tgt_dataplane" && out.iter().all(|v: &Violation| v.line != t.line) {
            out.push(Violation {
                file: file.to_path_buf(),
                line: t.line,
                edge: format!("{krate} -> tgt-dataplane"),
                found: t.text,
            });
        }
    }
    out
}

/// Checks the `Cargo.toml` of crate `krate` for a dependency on the data-plane crate: by
/// name (`tgt-dataplane = ...`, `[dependencies.tgt-dataplane]`), by `package =` rename, or
/// by a `path` to the `dataplane` directory (`dataplane/proto` is `tgt-proto` and allowed).
pub fn check_manifest(krate: &str, file: &Path, text: &str) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut in_deps = false;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.starts_with('[') {
            let header = line.trim_matches(|c| c == '[' || c == ']').trim();
            in_deps = header.contains("dependencies");
            if in_deps && is_dataplane_name(header.rsplit('.').next().unwrap_or("")) {
                out.push(manifest_violation(krate, file, i + 1, line));
            }
            continue;
        }
        if !in_deps || line.is_empty() {
            continue;
        }
        let key = line
            .split(['=', '.'])
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches('"');
        let names_it = is_dataplane_name(key)
            || quoted_value(line, "package").is_some_and(is_dataplane_name)
            || quoted_value(line, "path").is_some_and(|p| {
                let p = p.trim_end_matches('/');
                p == "dataplane" || p.ends_with("/dataplane")
            });
        if names_it {
            out.push(manifest_violation(krate, file, i + 1, line));
        }
    }
    out
}

fn manifest_violation(krate: &str, file: &Path, line: usize, text: &str) -> Violation {
    Violation {
        file: file.to_path_buf(),
        line,
        edge: format!("{krate} -> tgt-dataplane"),
        found: text.to_string(),
    }
}

fn is_dataplane_name(s: &str) -> bool {
    matches!(
        s.trim().trim_matches('"'),
        "tgt-dataplane" | "tgt_dataplane"
    )
}

/// The quoted value of `key = "..."` inside a manifest line, if present.
fn quoted_value<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let mut rest = line;
    while let Some(i) = rest.find(key) {
        let before_ok = i == 0
            || !rest[..i]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '-' || c == '_');
        let after = rest[i + key.len()..].trim_start();
        if before_ok {
            if let Some(v) = after.strip_prefix('=') {
                let v = v.trim_start().strip_prefix('"')?;
                return v.split('"').next();
            }
        }
        rest = &rest[i + key.len()..];
    }
    None
}

/// A socket or clock path (`tokio::net::..`, `tokio::time::..`, `std::net::TcpStream`,
/// `std::time::Instant`): what it reaches, or `None`.
fn system_path(path: &[String]) -> Option<&'static str> {
    let seg = |i: usize| path.get(i).map(String::as_str);
    let from = usize::from(seg(0) == Some(""));
    match (seg(from), seg(from + 1), seg(from + 2)) {
        (Some("tokio"), Some("net"), _) => Some("sockets"),
        (Some("tokio"), Some("time"), _) => Some("clock"),
        (Some("std" | "core"), Some("net"), Some(t))
            if t.starts_with("Tcp") || t == "UdpSocket" =>
        {
            Some("sockets")
        }
        (Some("std" | "core"), Some("time"), Some("Instant" | "SystemTime")) => Some("clock"),
        _ => None,
    }
}

/// The crate-root path `path` names from module `module`, or `None` when it does not start
/// at this crate (`std::..`, an extern crate, a local name).
fn resolve(module: &[String], path: &[String]) -> Option<Vec<String>> {
    let first = path.first()?.as_str();
    match first {
        "crate" | "tgt_dataplane" => Some(path[1..].to_vec()),
        "self" => {
            let mut abs = module.to_vec();
            abs.extend_from_slice(&path[1..]);
            Some(abs)
        }
        "super" => {
            let ups = path.iter().take_while(|s| *s == "super").count();
            let base = module.len().checked_sub(ups)?;
            let mut abs = module[..base].to_vec();
            abs.extend_from_slice(&path[ups..]);
            Some(abs)
        }
        _ => None,
    }
}

/// One token of blanked source: an identifier, `::`, or a punctuation character.
#[derive(Debug, Clone)]
struct Token {
    text: String,
    line: usize,
}

fn tokenize(code: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut line = 1;
    let mut chars = code.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '\n' {
            line += 1;
        } else if c.is_alphabetic() || c == '_' {
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = chars.peek() {
                if d.is_alphanumeric() || d == '_' {
                    end = j + d.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            out.push(Token {
                text: code[i..end].to_string(),
                line,
            });
        } else if c == ':' && chars.peek().is_some_and(|&(_, d)| d == ':') {
            chars.next();
            out.push(Token {
                text: "::".to_string(),
                line,
            });
        } else if !c.is_whitespace() {
            out.push(Token {
                text: c.to_string(),
                line,
            });
        }
    }
    out
}

fn is_ident(t: &str) -> bool {
    t.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// Every path in the token stream, with `use` trees expanded: `crate::{a, b::{c, d}}` gives
/// `crate::a`, `crate::b::c`, `crate::b::d`. A path written with a leading `::` starts with
/// an empty segment.
fn paths(tokens: &[Token]) -> Vec<(usize, Vec<String>)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i];
        let after_sep = i > 0 && tokens[i - 1].text == "::";
        let starts = if t.text == "::" {
            !(i > 0 && (is_ident(&tokens[i - 1].text) || tokens[i - 1].text == ">"))
                && tokens.get(i + 1).is_some_and(|n| is_ident(&n.text))
        } else {
            is_ident(&t.text) && !after_sep && tokens.get(i + 1).is_some_and(|n| n.text == "::")
        };
        if !starts {
            i += 1;
            continue;
        }
        let (found, next) = if t.text == "::" {
            let (mut found, next) = path_tree(tokens, i + 1);
            for (_, p) in &mut found {
                p.insert(0, String::new());
            }
            (found, next)
        } else {
            path_tree(tokens, i)
        };
        out.extend(found);
        i = next.max(i + 1);
    }
    out
}

/// Parses `seg (:: seg)* (:: { tree, .. } | :: *)?` at `i`; returns every expanded path and
/// the index after the tree.
fn path_tree(tokens: &[Token], mut i: usize) -> (Vec<(usize, Vec<String>)>, usize) {
    let line = tokens[i].line;
    let mut prefix = vec![tokens[i].text.clone()];
    i += 1;
    while i + 1 < tokens.len() && tokens[i].text == "::" {
        let next = &tokens[i + 1];
        if next.text == "{" {
            let mut out = Vec::new();
            i += 2;
            while i < tokens.len() && tokens[i].text != "}" {
                if is_ident(&tokens[i].text) {
                    let (subs, j) = path_tree(tokens, i);
                    for (l, mut p) in subs {
                        // `self` inside a group names the prefix itself.
                        if p.first().is_some_and(|s| s == "self") {
                            p.remove(0);
                        }
                        let mut full = prefix.clone();
                        full.extend(p);
                        out.push((l, full));
                    }
                    i = j;
                } else {
                    i += 1;
                }
                // Skip `as name` and the separator.
                while i < tokens.len() && !matches!(tokens[i].text.as_str(), "," | "}") {
                    if tokens[i].text == "{" {
                        break;
                    }
                    i += 1;
                }
                if i < tokens.len() && tokens[i].text == "," {
                    i += 1;
                }
            }
            return (out, i + 1);
        }
        if is_ident(&next.text) || next.text == "*" {
            prefix.push(next.text.clone());
            i += 2;
            if next.text == "*" {
                break;
            }
        } else {
            // `Vec::<u8>::new` and the like: the path so far is what matters.
            break;
        }
    }
    (vec![(line, prefix)], i)
}

/// `text` with every comment, string, byte-string and character literal replaced by spaces
/// (newlines kept, so line numbers stay right).
pub fn blank_comments_and_strings(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if let Some(hashes) = raw_string_start(&chars, i) {
            // r"..", r#".."#, br#".."#: ends at a quote followed by as many hashes.
            let open = chars[i..].iter().position(|&c| c == '"').unwrap_or(0) + 1;
            for _ in 0..open {
                out.push(' ');
            }
            i += open;
            while i < chars.len() {
                if chars[i] == '"' && (0..hashes).all(|k| chars.get(i + 1 + k) == Some(&'#')) {
                    for _ in 0..=hashes {
                        out.push(' ');
                    }
                    i += 1 + hashes;
                    break;
                }
                out.push(blank(chars[i]));
                i += 1;
            }
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' && is_char_literal(&chars, i) {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    out.push(' ');
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// At `i`: `r"`, `r#..#"`, `br"`, `br#..#"` not inside an identifier; the number of hashes.
fn raw_string_start(chars: &[char], i: usize) -> Option<usize> {
    if i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_') {
        return None;
    }
    let mut j = i;
    if chars.get(j) == Some(&'b') {
        j += 1;
    }
    if chars.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let hashes = chars[j..].iter().take_while(|&&c| c == '#').count();
    (chars.get(j + hashes) == Some(&'"')).then_some(hashes)
}

/// A `'` that opens a character literal (`'a'`, `'\n'`, `'\u{1F}'`) rather than a lifetime.
fn is_char_literal(chars: &[char], i: usize) -> bool {
    match chars.get(i + 1) {
        Some('\\') => true,
        Some(_) => chars.get(i + 2) == Some(&'\''),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(rel: &str, src: &str) -> Vec<String> {
        check_dataplane_source(Path::new(rel), src)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn flags_scsi_importing_the_backend_with_file_line_and_edge() {
        let src = "//! Sense data.\n\nuse crate::backend::ErrorKind;\nuse super::cdb;\n";
        assert_eq!(
            check("scsi/sense.rs", src),
            vec!["scsi/sense.rs:3: forbidden edge `scsi -> backend`: `crate::backend::ErrorKind`"]
        );
    }

    #[test]
    fn flags_grouped_nested_and_relative_imports_and_inline_paths() {
        let src = "use crate::{lu, pdu::{Bhs, op}, scsi::cdb};\n\
                   fn f() { let _ = super::super::conn::serve; }\n\
                   fn g(e: tgt_dataplane::session::SessionTable) {}\n\
                   use self::io::x;\n";
        let found = check("scsi/mode.rs", src);
        assert_eq!(
            found,
            vec![
                "scsi/mode.rs:1: forbidden edge `scsi -> pdu`: `crate::pdu::Bhs`",
                "scsi/mode.rs:2: forbidden edge `scsi -> conn`: `super::super::conn::serve`",
                "scsi/mode.rs:3: forbidden edge `scsi -> session`: `tgt_dataplane::session::SessionTable`",
            ],
            "`self::io` inside scsi/mode.rs is scsi::mode::io, not the io module"
        );
        // From scsi/mod.rs, one `super` already reaches the crate root.
        assert_eq!(
            check(
                "scsi/mod.rs",
                "pub fn f() -> super::io::Engine { todo!() }\n"
            ),
            vec!["scsi/mod.rs:1: forbidden edge `scsi -> io`: `super::io::Engine`"]
        );
    }

    #[test]
    fn ignores_comments_strings_and_allowed_imports() {
        let src = "// use crate::backend::ErrorKind;\n\
                   /* crate::pdu::Bhs /* nested */ crate::conn */\n\
                   const S: &str = \"crate::backend::X\";\n\
                   const R: &str = r#\"crate::io::\"uring\"#;\n\
                   const C: char = '\"';\n\
                   fn f<'a>(x: &'a crate::scsi::Lba) -> crate::lu::Nexus { todo!() }\n\
                   use std::time::Duration;\n";
        assert!(check("scsi/pr.rs", src).is_empty());
        assert!(check("lu.rs", "use crate::backend::Backend;\n").is_empty());
    }

    #[test]
    fn flags_sockets_and_clocks_in_pdu_and_login() {
        let src = "use std::net::{SocketAddr, TcpStream};\n\
                   use tokio::{io, net};\n\
                   fn now() -> std::time::Instant { Instant::now() }\n\
                   fn t() { tokio::time::sleep(d); }\n\
                   fn s() -> SystemTime { todo!() }\n";
        assert_eq!(
            check("login/negotiate.rs", src),
            vec![
                "login/negotiate.rs:1: forbidden edge `login -> sockets`: `std::net::TcpStream`",
                "login/negotiate.rs:2: forbidden edge `login -> sockets`: `tokio::net`",
                "login/negotiate.rs:3: forbidden edge `login -> clock`: `std::time::Instant`",
                "login/negotiate.rs:4: forbidden edge `login -> clock`: `tokio::time::sleep`",
                "login/negotiate.rs:5: forbidden edge `login -> clock`: `SystemTime`",
            ]
        );
        assert!(check("pdu/mod.rs", "use std::net::SocketAddr;\n").is_empty());
        assert!(check("conn/mod.rs", "use tokio::net::TcpStream;\n").is_empty());
    }

    #[test]
    fn flags_a_control_plane_or_cli_that_depends_on_the_data_plane() {
        let ok = "[package]\nname = \"tgtctl\"\n\n[dependencies]\n\
                  tgt-proto = { path = \"../dataplane/proto\" }\nserde.workspace = true\n";
        assert!(check_manifest("cli", Path::new("cli/Cargo.toml"), ok).is_empty());
        for (bad, line) in [
            ("[dependencies]\ntgt-dataplane.workspace = true\n", 2),
            (
                "[dev-dependencies]\ndp = { package = \"tgt-dataplane\", path = \"x\" }\n",
                2,
            ),
            ("[dependencies]\nx = { path = \"../dataplane\" }\n", 2),
            (
                "[package]\nname = \"c\"\n[dependencies.tgt-dataplane]\npath = \"../dataplane\"\n",
                3,
            ),
        ] {
            let v = check_manifest("controlplane", Path::new("controlplane/Cargo.toml"), bad);
            assert_eq!(v.first().map(|v| v.line), Some(line), "{bad}");
            assert_eq!(v[0].edge, "controlplane -> tgt-dataplane");
        }
        let src = "//! tgt_dataplane is spawned, not linked.\nuse tgt_dataplane::live;\n";
        let v = check_foreign_source("cli", Path::new("cli/src/x.rs"), src);
        assert_eq!(
            v.iter().map(ToString::to_string).collect::<Vec<_>>(),
            vec!["cli/src/x.rs:2: forbidden edge `cli -> tgt-dataplane`: `tgt_dataplane`"]
        );
    }

    #[test]
    fn module_paths_follow_the_file_layout() {
        assert_eq!(
            module_path(Path::new("scsi/sense.rs")),
            vec!["scsi", "sense"]
        );
        assert_eq!(module_path(Path::new("scsi/mod.rs")), vec!["scsi"]);
        assert_eq!(module_path(Path::new("limits.rs")), vec!["limits"]);
        assert!(module_path(Path::new("lib.rs")).is_empty());
    }
}
