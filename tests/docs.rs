//! The README's and docs' `console` blocks, run against the real binary:
//! a block whose output drifts from the program fails here.
//!
//! Each block is `$ backsync ARGS` then the expected output, with `...` for
//! lines left out and `[..]` for text that varies (wall-clock times).
//! `TRYCMD=overwrite cargo test --test docs` rewrites them after a deliberate
//! change of output (then check the diff).

#[test]
fn readme_and_docs_commands_match_the_program() {
    trycmd::TestCases::new()
        .register_bin("backsync", trycmd::cargo::cargo_bin!("backsync"))
        .env("NO_COLOR", "1")
        .case("README.md")
        .case("docs/*.md");
}

/// Every relative link in the repository's Markdown names a file inside the
/// repository that exists: a clone alone has no broken link.
#[test]
fn markdown_links_resolve_inside_the_repository() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md"), root.join("ARCHITECTURE.md")];
    for e in std::fs::read_dir(root.join("docs")).unwrap() {
        files.push(e.unwrap().path());
    }
    let mut broken = Vec::new();
    for f in files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "md"))
    {
        let text = std::fs::read_to_string(f).unwrap();
        // `](target)`: inline links; code spans and blocks hold none here.
        for (i, _) in text.match_indices("](") {
            let rest = &text[i + 2..];
            let Some(end) = rest.find(')') else { continue };
            let target = rest[..end].split('#').next().unwrap_or("");
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let path = f.parent().unwrap().join(target);
            let inside = path
                .canonicalize()
                .is_ok_and(|p| p.starts_with(root.canonicalize().unwrap()));
            if !inside {
                broken.push(format!("{}: {target}", f.display()));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "broken or outside links:\n{}",
        broken.join("\n")
    );
}
