//! tetherd's layers import only downwards and its modules form no cycle
//! (docs/architecture.md): process → transport → domain → store, with
//! `telemetry` and `util` as leaves. Read from the source, so a new `use`
//! that points up or closes a loop fails here with the file that has it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Which top-level modules each layer may name (besides itself).
const ALLOWED: &[(&str, &[&str])] = &[
    ("util", &[]),
    ("telemetry", &["util"]),
    ("store", &["util", "telemetry"]),
    ("domain", &["store", "util", "telemetry"]),
    ("transport", &["domain", "store", "util", "telemetry"]),
    ("process", &["transport", "domain", "store", "util", "telemetry"]),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source folder").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `domain/access/mod.rs` → `domain::access`.
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).expect("under src").with_extension("");
    let mut parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts.join("::")
}

/// The code of a file without comments and without its unit tests.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines().map(|line| line.split("//").next().unwrap_or_default()).collect::<Vec<_>>().join("\n")
}

/// Every `crate::a::b::…` path named in `code`, as the longest prefix that is a module.
fn named_modules(code: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut named = BTreeSet::new();
    for (start, _) in code.match_indices("crate::") {
        let rest = &code[start + "crate::".len()..];
        let path: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':').collect();
        let mut parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
        while !parts.is_empty() && !modules.contains(&parts.join("::")) {
            parts.pop();
        }
        if !parts.is_empty() {
            named.insert(parts.join("::"));
        }
    }
    named
}

fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(&src, f)).collect();
    let mut graph = BTreeMap::new();
    for file in &files {
        let module = module_of(&src, file);
        let text = std::fs::read_to_string(file).expect("readable source file");
        let named = named_modules(&code(&text), &modules)
            .into_iter()
            // A module may name itself and its ancestors (their items, through `crate::` paths).
            .filter(|target| *target != module && !module.starts_with(&format!("{target}::")))
            .collect();
        graph.insert(module, named);
    }
    graph
}

fn layer(module: &str) -> &str {
    module.split("::").next().unwrap_or(module)
}

#[test]
fn every_layer_imports_only_the_layers_below_it() {
    let mut violations = Vec::new();
    for (module, named) in imports() {
        let Some((_, allowed)) = ALLOWED.iter().find(|(name, _)| *name == layer(&module)) else { continue };
        for target in named {
            let to = layer(&target);
            if to != layer(&module) && !allowed.contains(&to) {
                violations.push(format!("{module} imports {target}: {} may import only {allowed:?}", layer(&module)));
            }
        }
    }
    assert!(violations.is_empty(), "imports against the layering:\n{}", violations.join("\n"));
}

#[test]
fn no_two_modules_import_each_other_even_indirectly() {
    let graph = imports();
    let reaches = |from: &str, to: &str| {
        let (mut seen, mut stack) = (BTreeSet::new(), vec![from.to_string()]);
        while let Some(next) = stack.pop() {
            for target in graph.get(&next).into_iter().flatten() {
                if target == to {
                    return true;
                }
                if seen.insert(target.clone()) {
                    stack.push(target.clone());
                }
            }
        }
        false
    };
    let cycles: Vec<String> = graph
        .iter()
        .flat_map(|(module, named)| named.iter().map(move |target| (module, target)))
        .filter(|(module, target)| reaches(target, module))
        .map(|(module, target)| format!("{module} → {target} → … → {module}"))
        .collect();
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_checks_see_the_tree() {
    let graph = imports();
    assert!(graph.len() > 40, "only {} modules found", graph.len());
    assert!(graph["transport::rpc::access"].contains("domain::access"), "a known import is found");
}
