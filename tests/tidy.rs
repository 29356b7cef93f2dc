//! The house rules, checked on the source (the floors of ARCHITECTURE.md made mechanical):
//!
//! - **Layers.** A top-level module imports only modules of lower layers ([`LAYERS`]), never
//!   one of its own layer or above; every top-level module has a place in the table.
//! - **No circles** between files: the arrows are the `crate::` and `super::` paths written in
//!   the code (tests, comments and re-exports left out), each resolved to the file of the
//!   longest module prefix.
//! - **sled** is named only under `src/store`.
//! - **Pure modules read no clock**: the rules that take `now` as a parameter ([`PURE`]) and
//!   the whole codec crate never call `now()`.
//! - **Metrics in one place**: no `"vakt_` literal and no `metrics::counter!`/`gauge!`/
//!   `histogram!` outside `src/telemetry.rs` (the session cookie's name is the one other
//!   `"vakt_` literal, [`NOT_METRICS`]).
//! - **The codec crate stays sans-IO**: `proto/Cargo.toml` depends on no runtime, socket or
//!   storage crate.
//!
//! The checks are functions over source text, so the tests at the end of this file also show
//! each of them failing on a small example.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The floors, top to bottom. A module may import modules of later entries only.
const LAYERS: &[&[&str]] = &[
    &["cli"],
    &["sim"],
    &["server"],
    &["config"],
    &["console", "ingest"],
    &["retention"],
    &["dispatch", "supervision", "work_orders", "voice", "care"],
    &["calls"],
    &["triage", "registers", "journal", "outbox"],
    &["store", "transport"],
    &["telemetry"],
    &["model"],
];

/// Files (under `src/`) or folders whose code takes `now` as a parameter and must never read
/// a clock.
const PURE: &[&str] = &[
    "triage/",
    "dispatch/access.rs",
    "dispatch/routing.rs",
    "dispatch/sla.rs",
    "dispatch/report.rs",
    "dispatch/stats.rs",
    "supervision/wheel.rs",
    "supervision/detector.rs",
    "ingest/dc09.rs",
    "work_orders/calendar.rs",
    "work_orders/faults.rs",
    "model/",
    "voice/media/inbound.rs",
    "voice/media/outbound.rs",
    "console/staffing.rs",
];

/// Clock readings.
const CLOCKS: &[&str] = &[
    "Timestamp::now()",
    "Zoned::now()",
    "SystemTime::now()",
    "Instant::now()",
];

/// `"vakt_` literals that are not metric names: (file under `src/`, literal).
const NOT_METRICS: &[(&str, &str)] = &[("console/api.rs", "\"vakt_session\"")];

/// Crates the codec crate must not depend on.
const NOT_IN_PROTO: &[&str] = &[
    "tokio", "sled", "quinn", "axum", "hyper", "rustls", "socket2", "mio", "metrics", "tracing",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One source file: its module path (`["dispatch", "desk"]`, `[]` for the crate root) and its
/// production code, without comments and without test modules.
struct Source {
    /// Path relative to the crate's `src/`.
    rel: String,
    module: Vec<String>,
    code: String,
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The module path of a file relative to `src/`.
fn module_of(rel: &str) -> Vec<String> {
    let trimmed = rel.trim_end_matches(".rs");
    let mut parts: Vec<String> = trimmed.split('/').map(str::to_owned).collect();
    if parts.last().is_some_and(|l| l == "mod") {
        parts.pop();
    }
    if parts == ["lib"] || parts == ["main"] {
        parts.clear();
    }
    parts
}

/// The code with comments removed; string and char literals are kept as they are.
fn strip_comments(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            continue;
        }
        // Raw strings: r"..." and r#"..."#.
        if c == b'r' && matches!(b.get(i + 1), Some(b'"') | Some(b'#')) {
            let prev_ident = i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
            if !prev_ident {
                let mut j = i + 1;
                let mut hashes = 0;
                while b.get(j) == Some(&b'#') {
                    hashes += 1;
                    j += 1;
                }
                if b.get(j) == Some(&b'"') {
                    let close: Vec<u8> = std::iter::once(b'"')
                        .chain(std::iter::repeat_n(b'#', hashes))
                        .collect();
                    let mut k = j + 1;
                    while k < b.len() && !b[k..].starts_with(&close) {
                        k += 1;
                    }
                    let end = (k + close.len()).min(b.len());
                    out.push_str(&src[i..end]);
                    i = end;
                    continue;
                }
            }
        }
        if c == b'"' {
            let mut k = i + 1;
            while k < b.len() && b[k] != b'"' {
                if b[k] == b'\\' {
                    k += 1;
                }
                k += 1;
            }
            let end = (k + 1).min(b.len());
            out.push_str(&src[i..end]);
            i = end;
            continue;
        }
        // A char literal holding a quote: '"' or '\''.
        if c == b'\'' && b.get(i + 2) == Some(&b'\'') && b.get(i + 1) == Some(&b'"') {
            out.push_str("'\"'");
            i += 3;
            continue;
        }
        let ch_len = src[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&src[i..i + ch_len]);
        i += ch_len;
    }
    out
}

/// An item without its visibility (`pub`, `pub(crate)`, `pub(super)`, `pub(in ...)`).
fn without_visibility(item: &str) -> &str {
    let Some(rest) = item.strip_prefix("pub") else {
        return item;
    };
    let rest = match rest.strip_prefix('(') {
        Some(r) => r.split_once(')').map_or(r, |(_, after)| after),
        None => rest,
    };
    rest.trim_start()
}

/// The code before the first `#[cfg(test)]` item that is a module (test modules come last in
/// every file of the project).
fn without_tests(code: &str) -> &str {
    let mut from = 0;
    while let Some(p) = code[from..].find("#[cfg(test)]") {
        let at = from + p;
        let after = without_visibility(code[at + "#[cfg(test)]".len()..].trim_start());
        if after.starts_with("mod ") {
            return &code[..at];
        }
        from = at + 1;
    }
    code
}

/// The names of the test-only modules a file declares (`#[cfg(test)] mod name;`).
fn test_modules(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(p) = rest.find("#[cfg(test)]") {
        let after = without_visibility(rest[p + "#[cfg(test)]".len()..].trim_start());
        if let Some(m) = after.strip_prefix("mod ") {
            let name: String = m
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if m[name.len()..].trim_start().starts_with(';') {
                out.push(name);
            }
        }
        rest = &rest[p + 1..];
    }
    out
}

/// Reads every production source file of a crate's `src/`.
fn sources(src_dir: &Path) -> Vec<Source> {
    let files = rust_files(src_dir);
    let mut all: Vec<(String, String)> = files
        .iter()
        .map(|p| {
            let rel = p
                .strip_prefix(src_dir)
                .map(|r| r.to_string_lossy().replace('\\', "/"))
                .unwrap_or_default();
            let text = std::fs::read_to_string(p).unwrap_or_default();
            (rel, strip_comments(&text))
        })
        .collect();
    // Files that are test modules of their parent.
    let mut test_files = BTreeSet::new();
    for (rel, code) in &all {
        let dir = match rel.rsplit_once('/') {
            Some((d, f)) if f == "mod.rs" || f == "lib.rs" => d.to_owned(),
            Some((d, f)) => format!("{d}/{}", f.trim_end_matches(".rs")),
            None if rel == "lib.rs" || rel == "main.rs" => String::new(),
            None => rel.trim_end_matches(".rs").to_owned(),
        };
        for m in test_modules(code) {
            let base = if dir.is_empty() {
                m.clone()
            } else {
                format!("{dir}/{m}")
            };
            test_files.insert(format!("{base}.rs"));
            test_files.insert(format!("{base}/mod.rs"));
        }
    }
    all.retain(|(rel, _)| !test_files.contains(rel));
    all.into_iter()
        .map(|(rel, code)| Source {
            module: module_of(&rel),
            code: without_tests(&code).to_owned(),
            rel,
        })
        .collect()
}

/// Whether a `use` statement starting at `at` is a re-export (`pub use`, `pub(crate) use`).
fn is_reexport(code: &str, at: usize) -> bool {
    let line_start = code[..at].rfind('\n').map_or(0, |p| p + 1);
    let line = code[line_start..at].trim_start();
    line.starts_with("pub use") || line.starts_with("pub(crate) use")
}

/// Expands a path tree (`a::b`, `a::{b, c::{d}}`) into full paths.
fn expand(prefix: &[String], tree: &str, out: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let head: Vec<String> = tree[..open]
            .split("::")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let mut base = prefix.to_vec();
        base.extend(head);
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&base, &inner[start..i], out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        expand(&base, &inner[start..], out);
    } else {
        let mut path = prefix.to_vec();
        for seg in tree.split("::") {
            let seg = seg.split(" as ").next().unwrap_or("").trim();
            if seg.is_empty() || seg == "self" || seg == "*" {
                continue;
            }
            path.push(seg.to_owned());
        }
        out.push(path);
    }
}

/// Every path a file names from `crate::` or `super::`, as a path from the crate root
/// (re-exports left out).
fn paths(src: &Source) -> Vec<Vec<String>> {
    let code = &src.code;
    let mut out = Vec::new();
    for (kw, up) in [("crate::", None), ("super::", Some(()))] {
        let mut from = 0;
        while let Some(p) = code[from..].find(kw) {
            let at = from + p;
            from = at + kw.len();
            let before = code[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let in_use = {
                let line_start = code[..at].rfind('\n').map_or(0, |p| p + 1);
                code[line_start..at].trim_start().contains("use ")
            };
            if in_use && is_reexport(code, at) {
                continue;
            }
            // The path tree: up to `;` inside a `use`, else identifier characters and `::`.
            let rest = &code[at + kw.len()..];
            let tree = if rest.starts_with('{') || (in_use && rest.contains(';')) {
                let end = if rest.starts_with('{') {
                    let mut depth = 0;
                    let mut end = rest.len();
                    for (i, c) in rest.char_indices() {
                        match c {
                            '{' => depth += 1,
                            '}' => {
                                depth -= 1;
                                if depth == 0 {
                                    end = i + 1;
                                    break;
                                }
                            }
                            _ => {}
                        }
                    }
                    end
                } else {
                    rest.find(';').unwrap_or(rest.len())
                };
                &rest[..end]
            } else {
                let end = rest
                    .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                    .unwrap_or(rest.len());
                rest[..end].trim_end_matches(':')
            };
            let base: Vec<String> = match up {
                None => Vec::new(),
                Some(()) => {
                    // `super` of a file module is its parent; `super::super` is handled as
                    // the path continues with "super".
                    let mut m = src.module.clone();
                    m.pop();
                    m
                }
            };
            let mut expanded = Vec::new();
            expand(&[], tree, &mut expanded);
            for p in expanded {
                let mut full = base.clone();
                for seg in p {
                    if seg == "super" {
                        full.pop();
                    } else {
                        full.push(seg);
                    }
                }
                if !full.is_empty() {
                    out.push(full);
                }
            }
        }
    }
    out
}

/// The layer of each top-level module.
fn layer_of() -> BTreeMap<&'static str, usize> {
    LAYERS
        .iter()
        .enumerate()
        .flat_map(|(i, l)| l.iter().map(move |m| (*m, i)))
        .collect()
}

/// Arrows that break the layer rule, and top-level modules missing from the table.
fn layer_violations(srcs: &[Source]) -> Vec<String> {
    let layers = layer_of();
    let top: BTreeSet<String> = srcs
        .iter()
        .filter_map(|s| s.module.first().cloned())
        .collect();
    let mut bad = Vec::new();
    for m in &top {
        if !layers.contains_key(m.as_str()) {
            bad.push(format!("module `{m}` has no place in LAYERS"));
        }
    }
    let mut seen = BTreeSet::new();
    for s in srcs {
        let Some(me) = s.module.first() else { continue };
        let Some(&mine) = layers.get(me.as_str()) else {
            continue;
        };
        for p in paths(s) {
            let Some(other) = p.first() else { continue };
            if other == me || !top.contains(other) {
                continue;
            }
            let Some(&theirs) = layers.get(other.as_str()) else {
                continue;
            };
            if theirs <= mine && seen.insert((s.rel.clone(), other.clone())) {
                let how = if theirs == mine {
                    "its own layer"
                } else {
                    "a layer above"
                };
                bad.push(format!(
                    "src/{} ({me}) imports `{other}`, {how}: {}",
                    s.rel,
                    p.join("::")
                ));
            }
        }
    }
    bad
}

/// The file arrows: each file to the files of the modules it names.
fn file_graph(srcs: &[Source]) -> BTreeMap<String, BTreeSet<String>> {
    let by_module: BTreeMap<Vec<String>, String> = srcs
        .iter()
        .map(|s| (s.module.clone(), s.rel.clone()))
        .collect();
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in srcs {
        let e = g.entry(s.rel.clone()).or_default();
        for p in paths(s) {
            // The longest prefix that is a module with a file.
            let target = (1..=p.len())
                .rev()
                .find_map(|n| by_module.get(&p[..n]))
                .cloned();
            if let Some(t) = target
                && t != s.rel
            {
                e.insert(t);
            }
        }
    }
    g
}

/// The strongly connected components with more than one node (Tarjan).
fn circles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        t.index.insert(v, t.next);
        t.low.insert(v, t.next);
        t.next += 1;
        t.stack.push(v);
        t.on.insert(v);
        if let Some(ws) = t.g.get(v) {
            for w in ws {
                let w = w.as_str();
                if !t.index.contains_key(w) {
                    visit(t, w);
                    let lw = t.low[w];
                    let lv = t.low[v];
                    t.low.insert(v, lv.min(lw));
                } else if t.on.contains(w) {
                    let iw = t.index[w];
                    let lv = t.low[v];
                    t.low.insert(v, lv.min(iw));
                }
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

/// Lines of production code that contain `needle`, as `file:line: text`.
fn lines_with(s: &Source, needle: &str) -> Vec<String> {
    s.code
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .map(|(i, l)| format!("src/{}:{}: {}", s.rel, i + 1, l.trim()))
        .collect()
}

fn sled_outside_store(srcs: &[Source]) -> Vec<String> {
    srcs.iter()
        .filter(|s| !s.rel.starts_with("store/"))
        .flat_map(|s| lines_with(s, "sled::"))
        .collect()
}

fn clocks_in_pure(srcs: &[Source], pure: &[&str]) -> Vec<String> {
    srcs.iter()
        .filter(|s| {
            pure.iter()
                .any(|p| s.rel == *p || (p.ends_with('/') && s.rel.starts_with(p)))
        })
        .flat_map(|s| CLOCKS.iter().flat_map(move |c| lines_with(s, c)))
        .collect()
}

fn metrics_outside_telemetry(srcs: &[Source]) -> Vec<String> {
    let mut bad = Vec::new();
    for s in srcs
        .iter()
        .filter(|s| s.rel != "telemetry.rs" && !s.rel.starts_with("telemetry/"))
    {
        for needle in [
            "metrics::counter!",
            "metrics::gauge!",
            "metrics::histogram!",
            "\"vakt_",
        ] {
            for l in lines_with(s, needle) {
                let allowed = NOT_METRICS
                    .iter()
                    .any(|(f, lit)| *f == s.rel && l.contains(lit));
                if !allowed {
                    bad.push(l);
                }
            }
        }
    }
    bad
}

fn report(what: &str, bad: &[String]) {
    assert!(bad.is_empty(), "{what}:\n  {}", bad.join("\n  "));
}

#[test]
fn layers_point_down() {
    let srcs = sources(&root().join("src"));
    assert!(srcs.len() > 50, "only {} files read", srcs.len());
    report("imports against the layers", &layer_violations(&srcs));
}

#[test]
fn no_file_imports_in_a_circle() {
    for dir in ["src", "proto/src"] {
        let srcs = sources(&root().join(dir));
        let c = circles(&file_graph(&srcs));
        let lines: Vec<String> = c.iter().map(|c| c.join(" <-> ")).collect();
        report(&format!("file import circles in {dir}"), &lines);
    }
}

/// The module arrows: each top-level module to the top-level modules its files name, and to
/// the codec crate `vakt_proto` where they name it.
fn module_graph(srcs: &[Source]) -> BTreeMap<String, BTreeSet<String>> {
    let top: BTreeSet<String> = srcs
        .iter()
        .filter_map(|s| s.module.first().cloned())
        .collect();
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in srcs {
        let Some(me) = s.module.first() else { continue };
        let e = g.entry(me.clone()).or_default();
        for p in paths(s) {
            if let Some(other) = p.first()
                && other != me
                && top.contains(other)
            {
                e.insert(other.clone());
            }
        }
        if s.code.contains("vakt_proto::") {
            e.insert("vakt_proto".to_owned());
        }
    }
    g
}

/// The module graph has no circle; `cargo test --test tidy module_graph -- --nocapture`
/// prints it, floor by floor.
#[test]
fn the_module_graph_has_no_circle() {
    let g = module_graph(&sources(&root().join("src")));
    let c = circles(&g);
    let lines: Vec<String> = c.iter().map(|c| c.join(" <-> ")).collect();
    report("module import circles in src", &lines);
    let layers = layer_of();
    let mut mods: Vec<&String> = g.keys().collect();
    mods.sort_by_key(|m| (layers.get(m.as_str()).copied().unwrap_or(usize::MAX), *m));
    let arrows: usize = g.values().map(BTreeSet::len).sum();
    println!("modules {}, arrows {arrows}, circles {}", g.len(), c.len());
    for m in mods {
        let to: Vec<&str> = g[m].iter().map(String::as_str).collect();
        println!("{m} -> {}", to.join(", "));
    }
}

#[test]
fn sled_only_in_the_store() {
    report(
        "sled named outside src/store",
        &sled_outside_store(&sources(&root().join("src"))),
    );
}

#[test]
fn pure_modules_read_no_clock() {
    report(
        "clock readings in pure modules",
        &clocks_in_pure(&sources(&root().join("src")), PURE),
    );
    report(
        "clock readings in the codec crate",
        &clocks_in_pure(&sources(&root().join("proto/src")), &[""]),
    );
    // Every PURE entry names something that exists.
    for p in PURE {
        assert!(
            root().join("src").join(p).exists(),
            "PURE names src/{p}, which is gone"
        );
    }
}

#[test]
fn metric_names_only_in_telemetry() {
    let mut bad = metrics_outside_telemetry(&sources(&root().join("src")));
    bad.extend(metrics_outside_telemetry(&sources(
        &root().join("proto/src"),
    )));
    report("metric names or macros outside src/telemetry.rs", &bad);
}

#[test]
fn the_codec_crate_depends_on_no_io() {
    let text = std::fs::read_to_string(root().join("proto/Cargo.toml")).expect("proto/Cargo.toml");
    let manifest: toml::Table = toml::from_str(&text).expect("a TOML manifest");
    let deps = manifest
        .get("dependencies")
        .and_then(|d| d.as_table())
        .cloned()
        .unwrap_or_default();
    assert!(
        !deps.is_empty(),
        "no dependencies read from proto/Cargo.toml"
    );
    let bad: Vec<String> = deps
        .keys()
        .filter(|k| NOT_IN_PROTO.contains(&k.as_str()))
        .cloned()
        .collect();
    report("I/O crates in proto/Cargo.toml", &bad);
}

// ---- the checks themselves, on small examples ----

fn src(rel: &str, text: &str) -> Source {
    let code = strip_comments(text);
    Source {
        module: module_of(rel),
        code: without_tests(&code).to_owned(),
        rel: rel.to_owned(),
    }
}

#[test]
fn an_arrow_up_or_sideways_is_reported() {
    let srcs = [
        src("store/calls.rs", "use crate::calls::Calls;\n"),
        src(
            "triage/mod.rs",
            "use crate::{model::Call, journal::Journal};\n",
        ),
        src("calls/mod.rs", "use crate::triage::Triage;\n"),
        src("journal.rs", "fn f() { crate::store::Store::open(); }\n"),
        src(
            "model/mod.rs",
            "// use crate::console::x;\n#[cfg(test)]\nmod tests { use crate::server::X; }\n",
        ),
        src("console/mod.rs", "pub use crate::sim::Y;\n"),
        src("sim/mod.rs", ""),
        src("server/mod.rs", ""),
        src("newthing.rs", ""),
    ];
    let bad = layer_violations(&srcs);
    assert!(
        bad.iter()
            .any(|b| b.contains("src/store/calls.rs (store) imports `calls`, a layer above")),
        "{bad:?}"
    );
    assert!(
        bad.iter()
            .any(|b| b.contains("src/triage/mod.rs (triage) imports `journal`, its own layer")),
        "{bad:?}"
    );
    assert!(
        bad.iter().any(|b| b.contains("`newthing` has no place")),
        "{bad:?}"
    );
    // Down arrows, comments, tests and re-exports are fine.
    assert_eq!(bad.len(), 3, "{bad:?}");
}

#[test]
fn a_circle_of_files_is_found() {
    let srcs = [
        src("calls/mod.rs", "use crate::dispatch::desk::DispatchView;\n"),
        src("dispatch/mod.rs", "pub mod desk;\n"),
        src("dispatch/desk.rs", "use super::hub::Hub;\n"),
        src(
            "dispatch/hub.rs",
            "fn f() -> crate::calls::Calls { todo() }\n",
        ),
        src("model/mod.rs", "use crate::calls::X;\n"),
    ];
    let c = circles(&file_graph(&srcs));
    assert_eq!(
        c,
        vec![vec![
            "calls/mod.rs".to_owned(),
            "dispatch/desk.rs".to_owned(),
            "dispatch/hub.rs".to_owned()
        ]]
    );
}

#[test]
fn sled_clocks_and_metric_names_are_found() {
    let srcs = [
        src("journal.rs", "fn f(t: &sled::Tree) {}\n"),
        src("store/mod.rs", "fn f(t: &sled::Tree) {}\n"),
        src(
            "triage/mod.rs",
            "fn f() { let n = Timestamp::now(); }\n// Timestamp::now()\n",
        ),
        src(
            "outbox.rs",
            "fn f() { metrics::gauge!(\"vakt_x\").set(1.0); }\n",
        ),
        src(
            "console/api.rs",
            "pub const COOKIE: &str = \"vakt_session\";\n",
        ),
        src("telemetry.rs", "fn f() { metrics::gauge!(\"vakt_x\"); }\n"),
    ];
    assert_eq!(
        sled_outside_store(&srcs),
        ["src/journal.rs:1: fn f(t: &sled::Tree) {}"]
    );
    assert_eq!(
        clocks_in_pure(&srcs, PURE),
        ["src/triage/mod.rs:1: fn f() { let n = Timestamp::now(); }"]
    );
    let m = metrics_outside_telemetry(&srcs);
    assert_eq!(m.len(), 2, "{m:?}");
    assert!(m.iter().all(|l| l.starts_with("src/outbox.rs:1")), "{m:?}");
}

#[test]
fn comments_and_strings_are_told_apart() {
    let code = strip_comments(
        "let a = \"http://x\"; // crate::y\nlet b = r#\"// z\"#; /* crate::w */ let c = '\"';\n",
    );
    assert!(code.contains("\"http://x\""));
    assert!(!code.contains("crate::y"));
    assert!(code.contains("r#\"// z\"#"));
    assert!(!code.contains("crate::w"));
    assert!(code.contains("let c = '\"';"));
}
