//! The documentation's links hold together: every relative link in README.md, SECURITY.md,
//! BENCHMARKS.md and docs/**/*.md names a file that exists and, for a `#fragment` into a
//! markdown file, a heading (GitHub's anchor rules) or `<a id|name="…">` that exists there.
//! README.md stays a short front door. Only std: no build of the rest of the workspace needed.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

const README_MAX_LINES: usize = 300;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// Every markdown file under `dir`, recursively.
fn markdown_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("readable docs directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            markdown_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "md") {
            out.push(path);
        }
    }
}

/// The text with fenced code blocks blanked out (newlines kept, so byte offsets still give
/// line numbers).
fn without_fences(text: &str) -> String {
    let mut fence: Option<&str> = None;
    text.split_inclusive('\n')
        .map(|line| {
            let marker = ["```", "~~~"].into_iter().find(|m| line.trim_start().starts_with(m));
            let code = fence.is_some() || marker.is_some();
            if fence.is_none() {
                fence = marker;
            } else if marker == fence {
                fence = None;
            }
            if !code {
                line
            } else if line.ends_with('\n') {
                "\n"
            } else {
                ""
            }
        })
        .collect()
}

/// Replaces each inline code span (a run of n backticks up to the next run of exactly n, within
/// one paragraph) by spaces.
fn blank_code_spans(text: &str) -> String {
    let b = text.as_bytes();
    let run = |i: usize| b[i..].iter().take_while(|&&c| c == b'`').count();
    let mut out = b.to_vec();
    let mut i = 0;
    while i < b.len() {
        let n = run(i);
        if n == 0 {
            i += 1;
            continue;
        }
        let paragraph_end = text[i..].find("\n\n").map_or(b.len(), |p| i + p);
        let mut j = i + n;
        while j < paragraph_end && !(b[j] == b'`' && b[j - 1] != b'`' && run(j) == n) {
            j += 1;
        }
        if j < paragraph_end {
            out[i..j + n].iter_mut().filter(|c| **c != b'\n').for_each(|c| *c = b' ');
            i = j + n;
        } else {
            i += n;
        }
    }
    String::from_utf8(out).expect("only ASCII bytes were replaced")
}

/// GitHub's anchor for a heading: lowercase, spaces to `-`, punctuation other than `-` and `_`
/// dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors a markdown file defines: its headings' slugs (`-1`, `-2` … for repeats) and
/// explicit `<a id="…">` / `<a name="…">`.
fn anchors(text: &str) -> Vec<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    for line in without_fences(text).lines() {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if (1..=6).contains(&hashes) && line[hashes..].starts_with(' ') {
            let title = line[hashes..].trim().trim_end_matches('#');
            let base = slug(title);
            let n = seen.entry(base.clone()).or_insert(0);
            out.push(if *n == 0 { base.clone() } else { format!("{base}-{n}") });
            *n += 1;
        }
    }
    for attr in ["<a id=\"", "<a name=\""] {
        for (at, _) in text.match_indices(attr) {
            let rest = &text[at + attr.len()..];
            out.push(rest[..rest.find('"').unwrap_or(0)].to_string());
        }
    }
    out
}

/// (line, target) of every `[text](target)` outside code.
fn links(text: &str) -> Vec<(usize, String)> {
    let prose = blank_code_spans(&without_fences(text));
    let mut out = Vec::new();
    for (at, _) in prose.match_indices("](") {
        let rest = &prose[at + 2..];
        let Some(end) = rest.find([')', '\n']).filter(|&e| rest[e..].starts_with(')')) else { continue };
        let target = rest[..end].split_whitespace().next().unwrap_or("");
        let target = target.trim_start_matches('<').trim_end_matches('>');
        let line = prose[..at].matches('\n').count() + 1;
        out.push((line, target.to_string()));
    }
    out
}

#[test]
fn every_documentation_link_resolves() {
    let root = repo_root();
    let mut files: Vec<PathBuf> = ["README.md", "SECURITY.md", "BENCHMARKS.md"].iter().map(|f| root.join(f)).collect();
    markdown_files(&root.join("docs"), &mut files);
    let read = |p: &Path| fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));

    let mut broken = Vec::new();
    let mut checked = 0;
    for file in &files {
        let text = read(file);
        let shown = file.strip_prefix(&root).unwrap_or(file).display().to_string();
        for (line, target) in links(&text) {
            if ["http:", "https:", "mailto:"].iter().any(|s| target.starts_with(s)) {
                continue;
            }
            checked += 1;
            let (path, fragment) = match target.split_once('#') {
                Some((p, f)) => (p, Some(f)),
                None => (target.as_str(), None),
            };
            let dest = if path.is_empty() { file.clone() } else { file.parent().unwrap().join(path) };
            let why = if target.is_empty() {
                Some("empty link target".to_string())
            } else if !dest.exists() {
                Some(format!("{} does not exist", dest.strip_prefix(&root).unwrap_or(&dest).display()))
            } else {
                match fragment {
                    Some(f) if dest.extension().is_some_and(|e| e == "md") => {
                        (!anchors(&read(&dest)).iter().any(|a| a == f)).then(|| format!("no anchor #{f} in {path:?}"))
                    }
                    _ => None,
                }
            };
            if let Some(why) = why {
                broken.push(format!("{shown}:{line}: {target} ({why})"));
            }
        }
    }
    assert!(checked > 0, "no links found: is the repository root {}?", root.display());
    assert!(broken.is_empty(), "{} broken documentation link(s):\n{}", broken.len(), broken.join("\n"));
}

#[test]
fn the_readme_stays_a_short_front_door() {
    let readme = repo_root().join("README.md");
    let readme_lines = fs::read_to_string(&readme).expect("README.md is readable").lines().count();
    assert!(
        readme_lines <= README_MAX_LINES,
        "README.md has {readme_lines} lines, more than {README_MAX_LINES}: move detail into docs/"
    );
}

#[test]
fn slugs_follow_githubs_rules() {
    assert_eq!(slug("Running `tetherd`"), "running-tetherd");
    assert_eq!(slug("TPM 2.0: `tether verify-ek`"), "tpm-20-tether-verify-ek");
    assert_eq!(slug("Walkthrough: one employer, one laptop"), "walkthrough-one-employer-one-laptop");
    let text = "# Tests\n```\n# not a heading\n```\n## Tests\n<a id=\"custom\"></a>\n";
    assert_eq!(anchors(text), ["tests", "tests-1", "custom"]);
    let links = links("see [a](x.md#y) and `[b](code.md)`\n```\n[c](fenced.md)\n```\n[d\ne](z.md)\n");
    assert_eq!(links, [(1, "x.md#y".to_string()), (6, "z.md".to_string())]);
}
