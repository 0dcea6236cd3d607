//! The crate's floors hold: every `crate::` / `super::` path in `src/` points down the order
//! declared by the `// Floor N.` comments over the module list in `src/lib.rs`, and no files
//! import each other in a circle. The floor tables in the README and the crate docs match the
//! declaration.
//!
//! Paths are read from code, not comments (intra-doc links are not imports), and resolved to
//! the file that defines the item, following `pub use` re-exports through `mod.rs` files. A
//! file reaching an item its own parent module (`mod.rs`) defines is not an edge: children
//! extend their parent's types (`impl HotplugGate` in `state.rs`), and the parent names its
//! children's items; circles among siblings and across folders are what this test refuses.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A source tree: file path relative to `src/` → contents.
type Tree = BTreeMap<String, String>;

fn read_tree(root: &Path) -> Tree {
    fn walk(dir: &Path, root: &Path, out: &mut Tree) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, root, out);
            } else if path.extension().is_some_and(|x| x == "rs") {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.insert(rel, std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut out = Tree::new();
    walk(root, root, &mut out);
    out
}

/// The source with comments and the contents of string literals blanked out (so that `//`
/// inside a string is not a comment, and a path inside one is not an import). Line structure
/// is kept, so line numbers stay right.
fn strip_comments(src: &str) -> String {
    let b: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if b[i] == '\n' {
                        out.push('\n');
                    }
                    i += 1;
                }
            }
        } else if c == '"' {
            out.push(c);
            i += 1;
            let blank = |ch: char| if ch == '\n' { '\n' } else { ' ' };
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < b.len() {
                    out.push(blank(b[i]));
                    i += 1;
                }
            }
            if i < b.len() {
                out.push('"');
                i += 1;
            }
        } else if c == 'r' && (next == Some('#') || next == Some('"')) && !ident_char(prev(&b, i)) {
            // Raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            let close: String = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            let rest: String = b[j + 1..].iter().collect();
            let end = rest
                .find(&close)
                .map_or(b.len(), |k| j + 1 + rest[..k].chars().count() + close.len());
            out.extend(
                b[i..end]
                    .iter()
                    .map(|&ch| if ch == '\n' { '\n' } else { ' ' }),
            );
            i = end;
        } else if c == '\'' && b.get(i + 2) == Some(&'\'') {
            out.extend(&b[i..i + 3]);
            i += 3;
        } else if c == '\'' && next == Some('\\') {
            let end = (i + 2..b.len())
                .find(|&k| b[k] == '\'')
                .map_or(b.len(), |k| k + 1);
            out.extend(&b[i..end]);
            i = end;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn prev(b: &[char], i: usize) -> char {
    if i == 0 { ' ' } else { b[i - 1] }
}

fn ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The module path of a file: `layout/optimal/dp.rs` → `["layout", "optimal", "dp"]`,
/// `layout/mod.rs` → `["layout"]`, `lib.rs` → `[]`.
fn module_of(file: &str) -> Vec<String> {
    let mut parts: Vec<String> = file
        .trim_end_matches(".rs")
        .split('/')
        .map(String::from)
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// The file of a module path, if the tree has one.
fn file_of(tree: &Tree, module: &[String]) -> Option<String> {
    if module.is_empty() {
        return Some("lib.rs".into());
    }
    let base = module.join("/");
    [format!("{base}.rs"), format!("{base}/mod.rs")]
        .into_iter()
        .find(|f| tree.contains_key(f))
}

/// One path a file uses: its segments (from the crate root once resolved) and its line.
#[derive(Clone, Debug)]
struct Use {
    line: usize,
    text: String,
    segments: Vec<String>,
}

/// Expands a use tree (`a::{b, c::{self, D}}`) into full paths.
fn expand(tree: &str, prefix: &[String], out: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    if tree.is_empty() {
        return;
    }
    // Split off the leading path up to a top-level `{`.
    if let Some(open) = tree.find('{') {
        let head = tree[..open].trim().trim_end_matches("::");
        let close = tree.rfind('}').unwrap_or(tree.len());
        let inner = &tree[open + 1..close];
        let mut p = prefix.to_vec();
        p.extend(
            head.split("::")
                .filter(|s| !s.is_empty())
                .map(|s| s.trim().to_string()),
        );
        let mut depth = 0;
        let mut start = 0;
        for (k, ch) in inner.char_indices() {
            match ch {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&inner[start..k], &p, out);
                    start = k + 1;
                }
                _ => {}
            }
        }
        expand(&inner[start..], &p, out);
        return;
    }
    let path = tree.split(" as ").next().unwrap_or(tree).trim();
    let mut p = prefix.to_vec();
    for seg in path.split("::").map(str::trim).filter(|s| !s.is_empty()) {
        if seg == "self" && !p.is_empty() {
            continue;
        }
        p.push(seg.to_string());
    }
    out.push(p);
}

/// Every `crate::` / `super::` / `self::` path in a file's code, with its line.
fn uses_of(src: &str) -> Vec<Use> {
    let code = strip_comments(src);
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    let mut out = Vec::new();
    let mut covered: Vec<(usize, usize)> = Vec::new();
    // `use` statements (possibly multi-line).
    let mut from = 0;
    while let Some(k) = code[from..].find("use ") {
        let at = from + k;
        from = at + 4;
        let before = code[..at].trim_end();
        let starts_item = before.is_empty()
            || before.ends_with(';')
            || before.ends_with('{')
            || before.ends_with('}')
            || before.ends_with(']')
            || before.ends_with("pub")
            || before.ends_with(')');
        if !starts_item || (at > 0 && ident_char(code[..at].chars().last().unwrap_or(' '))) {
            continue;
        }
        let Some(end) = code[at..].find(';') else {
            continue;
        };
        let stmt = &code[at + 4..at + end];
        let first = stmt.trim_start();
        if !(first.starts_with("crate::")
            || first.starts_with("super::")
            || first.starts_with("self::"))
        {
            covered.push((at, at + end));
            continue;
        }
        let mut paths = Vec::new();
        expand(stmt, &[], &mut paths);
        let text = format!(
            "use {};",
            stmt.split_whitespace().collect::<Vec<_>>().join(" ")
        );
        for segments in paths {
            out.push(Use {
                line: line_of(at),
                text: text.clone(),
                segments,
            });
        }
        covered.push((at, at + end));
    }
    // Inline paths outside `use` statements.
    for key in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(k) = code[from..].find(key) {
            let at = from + k;
            from = at + key.len();
            if at > 0
                && (ident_char(code[..at].chars().last().unwrap_or(' '))
                    || code[..at].ends_with(':'))
            {
                continue;
            }
            if covered.iter().any(|&(s, e)| s <= at && at < e) {
                continue;
            }
            let rest = &code[at..];
            let end = rest
                .find(|c: char| !(ident_char(c) || c == ':'))
                .unwrap_or(rest.len());
            let path = rest[..end].trim_end_matches(':');
            let segments: Vec<String> = path.split("::").map(String::from).collect();
            let line = line_of(at);
            let text = code.lines().nth(line - 1).unwrap_or("").trim().to_string();
            out.push(Use {
                line,
                text,
                segments,
            });
        }
    }
    out
}

/// Resolves a path used in `file` to crate-root segments.
fn absolute(file: &str, segments: &[String]) -> Vec<String> {
    let mut module = module_of(file);
    let mut rest = segments;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            module.clear();
            rest = &rest[1..];
        }
        Some("self") => rest = &rest[1..],
        _ => {
            while rest.first().is_some_and(|s| s == "super") {
                module.pop();
                rest = &rest[1..];
            }
        }
    }
    module.extend(rest.iter().cloned());
    module
}

/// `pub use` / `pub(crate) use` re-exports of a module file: item name → the path it names.
fn reexports(src: &str) -> BTreeMap<String, Vec<String>> {
    let code = strip_comments(src);
    let mut out = BTreeMap::new();
    for stmt in code.split(';') {
        let s = stmt.trim();
        let Some(tree) = s
            .strip_prefix("pub use ")
            .or_else(|| s.strip_prefix("pub(crate) use "))
            .or_else(|| s.rsplit_once("\npub use ").map(|x| x.1))
            .or_else(|| s.rsplit_once("\npub(crate) use ").map(|x| x.1))
        else {
            continue;
        };
        let mut paths = Vec::new();
        expand(tree, &[], &mut paths);
        for p in paths {
            if let Some(name) = p.last() {
                out.insert(name.clone(), p.clone());
            }
        }
    }
    out
}

/// The file that defines what `path` (crate-root segments) names, following re-exports.
fn defining_file(tree: &Tree, path: &[String], depth: usize) -> Option<String> {
    let mut module: Vec<String> = Vec::new();
    for (k, seg) in path.iter().enumerate() {
        let mut next = module.clone();
        next.push(seg.clone());
        if file_of(tree, &next).is_some() {
            module = next;
            continue;
        }
        // `seg` is an item of `module`: defined there or re-exported from a child.
        let file = file_of(tree, &module)?;
        if depth < 8
            && let Some(target) = reexports(&tree[&file]).get(seg)
        {
            let abs = absolute(&file, target);
            if abs != path[..=k] {
                return defining_file(tree, &abs, depth + 1);
            }
        }
        return Some(file);
    }
    file_of(tree, &module)
}

/// Floors declared in `lib.rs`: module → floor number.
fn declared_floors(lib: &str) -> Result<BTreeMap<String, u32>, String> {
    let mut out = BTreeMap::new();
    let mut floor: Option<u32> = None;
    for (i, raw) in lib.lines().enumerate() {
        let line = raw.trim();
        if let Some(n) = line
            .strip_prefix("// Floor ")
            .and_then(|r| r.strip_suffix('.'))
        {
            let n: u32 = n
                .parse()
                .map_err(|_| format!("lib.rs:{}: bad floor number: {line}", i + 1))?;
            if floor.is_some_and(|f| n != f + 1) || (floor.is_none() && n != 1) {
                return Err(format!(
                    "lib.rs:{}: floors must count up from 1: {line}",
                    i + 1
                ));
            }
            floor = Some(n);
        } else if let Some(name) = line
            .strip_prefix("pub mod ")
            .or_else(|| line.strip_prefix("mod "))
        {
            let name = name.trim_end_matches(';').to_string();
            let f = floor
                .ok_or_else(|| format!("lib.rs:{}: module `{name}` before any floor", i + 1))?;
            out.insert(name, f);
        }
    }
    if out.is_empty() {
        return Err("lib.rs declares no floors".into());
    }
    Ok(out)
}

/// Every violation in the tree: upward or sideways imports, and circles of files.
fn violations(tree: &Tree) -> Vec<String> {
    let floors = match declared_floors(&tree["lib.rs"]) {
        Ok(f) => f,
        Err(e) => return vec![e],
    };
    let mut problems = Vec::new();
    for file in tree.keys().filter(|f| *f != "lib.rs") {
        let top = &module_of(file)[0];
        if !floors.contains_key(top) {
            problems.push(format!(
                "src/{file}: module `{top}` is on no floor in lib.rs"
            ));
        }
    }
    let mut edges: BTreeMap<String, BTreeMap<String, (usize, String)>> = BTreeMap::new();
    for (file, src) in tree {
        if file == "lib.rs" {
            continue;
        }
        let me = module_of(file);
        let my_floor = floors.get(&me[0]).copied();
        for u in uses_of(src) {
            let abs = absolute(file, &u.segments);
            let Some(target_top) = abs.first() else {
                continue;
            };
            if target_top != &me[0] {
                // Into another top-level module: it must be on a lower floor.
                match (my_floor, floors.get(target_top)) {
                    (Some(mine), Some(&theirs)) if theirs >= mine => problems.push(format!(
                        "src/{file}:{}: `{}` imports `{target_top}` (floor {theirs}) into `{}` (floor {mine}); \
                         a module may only import from lower floors",
                        u.line, u.text, me[0]
                    )),
                    _ => {}
                }
            }
            if let Some(target) = defining_file(tree, &abs, 0)
                && &target != file
                && target != "lib.rs"
            {
                // A child reaching what its own parent modules define is not an edge.
                let target_module = module_of(&target);
                let is_ancestor = target.ends_with("mod.rs")
                    && me.starts_with(&target_module)
                    && me != target_module;
                if !is_ancestor {
                    edges
                        .entry(file.clone())
                        .or_default()
                        .entry(target)
                        .or_insert((u.line, u.text.clone()));
                }
            }
        }
    }
    problems.extend(circles(&edges));
    problems
}

/// Circles in the file graph, each reported once with the lines that make it.
fn circles(edges: &BTreeMap<String, BTreeMap<String, (usize, String)>>) -> Vec<String> {
    // Tarjan's strongly connected components.
    struct S<'a> {
        edges: &'a BTreeMap<String, BTreeMap<String, (usize, String)>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        next: usize,
        sccs: Vec<Vec<&'a str>>,
    }
    fn visit<'a>(s: &mut S<'a>, v: &'a str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on.insert(v);
        if let Some(out) = s.edges.get(v) {
            for w in out.keys() {
                let w = w.as_str();
                if !s.index.contains_key(w) {
                    visit(s, w);
                    let lw = s.low[w];
                    let lv = s.low[v];
                    s.low.insert(v, lv.min(lw));
                } else if s.on.contains(w) {
                    let iw = s.index[w];
                    let lv = s.low[v];
                    s.low.insert(v, lv.min(iw));
                }
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on.remove(w);
                comp.push(w);
                if w == v {
                    break;
                }
            }
            s.sccs.push(comp);
        }
    }
    let mut s = S {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        sccs: Vec::new(),
    };
    for v in edges.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    let mut out = Vec::new();
    for mut comp in s.sccs.into_iter().filter(|c| c.len() > 1) {
        comp.sort();
        let set: BTreeSet<&str> = comp.iter().copied().collect();
        let mut msg = format!("circle of {} files: {}", comp.len(), comp.join(", "));
        for a in &comp {
            for (b, (line, text)) in &edges[*a] {
                if set.contains(b.as_str()) {
                    msg.push_str(&format!("\n    src/{a}:{line}: `{text}` -> src/{b}"));
                }
            }
        }
        out.push(msg);
    }
    out
}

/// The floor table of a Markdown section: rows `| N | modules | ... |`, module names in
/// backticks → floor.
fn table_floors(doc: &str, after: &str) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    let Some(start) = doc.find(after) else {
        return out;
    };
    for line in doc[start..].lines() {
        let line = line.trim_start_matches("//!").trim();
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 {
            continue;
        }
        let Ok(floor) = cells[1].parse::<u32>() else {
            continue;
        };
        for name in cells[2].split('`').skip(1).step_by(2) {
            let name = name
                .trim_start_matches("src/")
                .trim_end_matches('/')
                .trim_matches(['[', ']']);
            let name = name.split("::").last().unwrap_or(name);
            out.insert(name.to_string(), floor);
        }
    }
    out
}

fn src_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn every_import_points_down_and_no_files_import_each_other_in_a_circle() {
    let tree = read_tree(&src_root());
    let files = tree.len();
    let uses: usize = tree.values().map(|s| uses_of(s).len()).sum();
    let floors = declared_floors(&tree["lib.rs"]).unwrap();
    // The checker saw the crate: dozens of files, hundreds of paths, every floor.
    assert!(files > 60 && uses > 300, "read {files} files, {uses} paths");
    assert_eq!(floors.values().max(), Some(&10), "{floors:?}");
    let problems = violations(&tree);
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn the_readme_and_crate_docs_draw_the_declared_floors() {
    let tree = read_tree(&src_root());
    let declared = declared_floors(&tree["lib.rs"]).unwrap();
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    for (what, table) in [
        (
            "README.md, section Architecture",
            table_floors(&readme, "## Architecture"),
        ),
        (
            "src/lib.rs, section Floors",
            table_floors(&tree["lib.rs"], "# Floors"),
        ),
    ] {
        assert_eq!(
            table, declared,
            "{what} does not match the floors declared in src/lib.rs"
        );
    }
}

/// A small tree for checking the checker: floors `a` (1), `b` (2), `c` (3).
fn toy(files: &[(&str, &str)]) -> Tree {
    let mut t = Tree::new();
    t.insert(
        "lib.rs".into(),
        "// Floor 1.\npub mod a;\n// Floor 2.\npub mod b;\n// Floor 3.\npub mod c;\n".into(),
    );
    for (f, s) in files {
        t.insert(f.to_string(), s.to_string());
    }
    t
}

#[test]
fn an_upward_import_fails_with_its_line() {
    let t = toy(&[
        ("a.rs", "pub struct A;\n"),
        ("b/mod.rs", "mod x;\npub use x::X;\n"),
        ("b/x.rs", "use crate::a::A;\npub struct X(A);\n"),
        (
            "c.rs",
            "//! Uses [`crate::a::A`] in a doc link: not an import.\n",
        ),
    ]);
    assert_eq!(violations(&t), Vec::<String>::new());
    // Break a floor: `a` (floor 1) reaches into `b` (floor 2), in a use group over lines.
    let mut broken = t.clone();
    broken.insert(
        "a.rs".into(),
        "pub struct A;\n\nuse crate::{\n    b::X,\n};\nfn f(_: X) {}\n".into(),
    );
    let p = violations(&broken);
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(
        p[0].starts_with("src/a.rs:3: `use crate::{ b::X, };` imports `b` (floor 2)"),
        "{}",
        p[0]
    );
    // b/x.rs already imports a.rs, so the upward import also closes a circle.
    assert!(
        p[1].starts_with("circle of 2 files: a.rs, b/x.rs"),
        "{}",
        p[1]
    );
    // Sideways (same floor) and inline paths count too.
    let mut sideways = t.clone();
    sideways.insert(
        "c.rs".into(),
        "fn f() -> crate::c::Y { todo!() }\npub struct Y;\n".into(),
    );
    sideways.insert(
        "b/x.rs".into(),
        "pub struct X;\nfn g() { let _ = crate::c::Y; }\n".into(),
    );
    let p = violations(&sideways);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].starts_with("src/b/x.rs:2:"), "{}", p[0]);
}

#[test]
fn a_circle_of_files_fails_naming_each_line() {
    let t = toy(&[
        (
            "b/mod.rs",
            "mod p;\nmod q;\nmod r;\npub use q::Q;\npub struct Gate;\n",
        ),
        (
            "b/p.rs",
            "use super::q::Q;\nuse super::Gate;\npub struct P(Q);\n",
        ),
        // Through the re-export in mod.rs: `super::Q` is q.rs's item.
        ("b/q.rs", "use super::r::R;\npub struct Q(R);\n"),
        (
            "b/r.rs",
            "pub struct R;\nimpl R { fn f(_: super::p::P) {} }\n",
        ),
    ]);
    let p = violations(&t);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("circle of 3 files: b/p.rs, b/q.rs, b/r.rs"),
        "{}",
        p[0]
    );
    assert!(p[0].contains("src/b/r.rs:2:"), "{}", p[0]);
    // Children reaching their parent's own items (the `impl Gate` pattern) are no circle.
    let ok = toy(&[
        ("b/mod.rs", "mod s;\npub struct Gate { w: s::W }\n"),
        (
            "b/s.rs",
            "use super::Gate;\npub struct W;\nimpl Gate { fn f(&self) {} }\n",
        ),
    ]);
    assert_eq!(violations(&ok), Vec::<String>::new());
}

#[test]
fn comments_and_strings_are_not_code() {
    let src = "let s = \"// not a comment crate::x\";\n/* crate::y\n */ let t = r#\"crate::z\"#;\n// crate::w\nuse crate::v;\n";
    let stripped = strip_comments(src);
    for hidden in ["crate::x", "crate::y", "crate::z", "crate::w"] {
        assert!(!stripped.contains(hidden), "{hidden} survived: {stripped}");
    }
    assert_eq!(stripped.lines().count(), src.lines().count());
    let paths: Vec<Vec<String>> = uses_of(src).into_iter().map(|u| u.segments).collect();
    assert_eq!(paths, vec![vec!["crate".to_string(), "v".to_string()]]);
}
