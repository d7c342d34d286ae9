//! Every file in `tests/invalid_scenarios/` must be rejected with a message
//! that names the file, the expected line (or none) and contains the text of
//! its header:
//!
//! ```toml
//! # expect: <substring of the error message>
//! # line: <1-based line of the error, or `none`>
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use backsync::scenario::Scenario;

/// The `# key: value` header line `n` (0-based) of a file, read as bytes
/// because some files are deliberately not UTF-8 after the header.
fn header(bytes: &[u8], n: usize, key: &str) -> String {
    let line = bytes.split(|&b| b == b'\n').nth(n).unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    line.strip_prefix(&format!("# {key}: "))
        .unwrap_or_else(|| panic!("line {} must be `# {key}: ...`, is {line:?}", n + 1))
        .trim_end()
        .to_string()
}

fn corpus() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir("tests/invalid_scenarios")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

fn check(path: &Path, failures: &mut Vec<String>) {
    let bytes = fs::read(path).unwrap();
    let expect = header(&bytes, 0, "expect");
    let line = header(&bytes, 1, "line");
    let err = match Scenario::from_path(path) {
        Ok(_) => return failures.push(format!("{}: accepted", path.display())),
        Err(e) => e,
    };
    let shown = err.to_string();
    let want_line = (line != "none").then(|| line.parse::<usize>().unwrap_or(0));
    let prefix = match want_line {
        Some(l) => format!("{}:{l}:", path.display()),
        None => format!("{}: ", path.display()),
    };
    if !shown.contains(&expect) || !shown.starts_with(&prefix) || err.line != want_line {
        failures.push(format!(
            "{}\n   want: {prefix} ... {expect}\n    got: {shown}",
            path.display()
        ));
    }
}

#[test]
fn every_invalid_scenario_is_rejected_with_its_message() {
    let files = corpus();
    assert!(files.len() >= 26, "corpus too small: {}", files.len());
    let mut failures = Vec::new();
    for path in &files {
        check(path, &mut failures);
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn binary_and_unreadable_files() {
    let dir = std::env::temp_dir().join(format!("backsync-invalid-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let cases: [(&str, &[u8], &str); 4] = [
        ("empty.toml", b"", "missing required field `name`"),
        ("latin1.toml", b"name = \"Caf\xe9\"\n", "not UTF-8 text"),
        (
            "png.toml",
            b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR",
            "not UTF-8 text",
        ),
        ("nul.toml", b"name = \"x\"\n\0\0\0\0", "not UTF-8 text"),
    ];
    for (name, bytes, expect) in cases {
        let path = dir.join(name);
        fs::write(&path, bytes).unwrap();
        let shown = Scenario::from_path(&path).unwrap_err().to_string();
        assert!(shown.starts_with(&path.display().to_string()), "{shown}");
        assert!(shown.contains(expect), "{shown}");
    }
    let missing = dir.join("missing.toml");
    let shown = Scenario::from_path(&missing).unwrap_err().to_string();
    assert!(shown.starts_with(&missing.display().to_string()), "{shown}");
    assert!(shown.contains("cannot read the file"), "{shown}");
    fs::remove_dir_all(&dir).unwrap();
}
