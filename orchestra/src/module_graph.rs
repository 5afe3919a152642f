//! The orchestra's module graph has no cycle (issue 12): a layer that imports one above it
//! is how `dispatch.rs` came to be both the lowest layer and the highest.
//!
//! A module is a file (`foo/mod.rs` is `foo`, `foo/bar.rs` is `foo::bar`; a parent and its
//! child are separate nodes). Its dependencies are every `crate::a::b` it names, in code, in
//! `use crate::{a, b::c}` groups and in doc links (`[`crate::a`]`: they break when the target
//! moves; a path only mentioned in prose does not count), each mapped to the deepest module
//! file the path names. A `mod x;`
//! declaration is not a dependency, nor are `super::` and relative paths (a child reaching
//! its parent's helpers, or a parent its children's routes). Plain `//` comments and string
//! literals are not code.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

/// The module a file under `src/` is: `None` for the binary's `main.rs`.
fn module_of(relative: &Path) -> Option<String> {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let file = parts.pop()?;
    let stem = file.strip_suffix(".rs")?;
    match (parts.is_empty(), stem) {
        (true, "main") => return None,
        (true, "lib") => return Some("crate".to_owned()),
        (_, "mod") => {}
        _ => parts.push(stem.to_owned()),
    }
    Some(parts.join("::"))
}

/// The source with comments and string and char literals blanked, but for the `crate::`
/// paths that doc comments link to.
fn code_and_docs(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    while i < chars.len() {
        let c = chars[i];
        if c == '/' && at(i + 1) == '/' {
            let doc = (at(i + 2) == '/' && at(i + 3) != '/') || at(i + 2) == '!';
            let mut line = String::new();
            while i < chars.len() && chars[i] != '\n' {
                line.push(chars[i]);
                i += 1;
            }
            if doc {
                out.push_str(&doc_links(&line));
            }
        } else if c == '/' && at(i + 1) == '*' {
            let doc = (at(i + 2) == '*' && at(i + 3) != '/') || at(i + 2) == '!';
            let mut depth = 0;
            let mut text = String::new();
            while i < chars.len() {
                if chars[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    text.push(chars[i]);
                    i += 1;
                }
            }
            if doc {
                out.push_str(&doc_links(&text));
            }
            out.push(' ');
        } else if (c == 'r' || (c == 'b' && at(i + 1) == 'r'))
            && (i == 0 || !ident(chars[i - 1]))
            && {
                let mut j = i + if c == 'b' { 2 } else { 1 };
                while at(j) == '#' {
                    j += 1;
                }
                at(j) == '"'
            }
        {
            // A raw string: up to the quote followed by as many hashes.
            i += if c == 'b' { 2 } else { 1 };
            let mut hashes = 0;
            while at(i) == '#' {
                hashes += 1;
                i += 1;
            }
            i += 1;
            while i < chars.len() {
                if chars[i] == '"' && (1..=hashes).all(|k| at(i + k) == '#') {
                    i += 1 + hashes;
                    break;
                }
                i += 1;
            }
            out.push_str("\"\"");
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' && (at(i + 1) == '\\' || at(i + 2) == '\'') {
            // A char literal (a lifetime has no closing quote right after one char).
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("' '");
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// The `crate::` paths a line of documentation links to (`[`crate::a`]`, `[text](crate::a)`,
/// `[text]: crate::a`), space-separated; a path only mentioned in prose links nothing.
fn doc_links(line: &str) -> String {
    let mut links = String::new();
    for (at, _) in line.match_indices("crate::") {
        let before = line[..at].strip_suffix('`').unwrap_or(&line[..at]);
        if before.ends_with('[') || before.ends_with("](") || before.ends_with("]: ") {
            let path: String = line[at..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            links.push(' ');
            links.push_str(&path);
        }
    }
    links
}

/// Every path `crate::…` names, groups expanded: `crate::{a, b::{c, d}}` is `a`, `b::c`,
/// `b::d` (each as its segments after `crate`).
fn crate_paths(text: &str) -> Vec<Vec<String>> {
    let chars: Vec<char> = text.chars().collect();
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut paths = vec![];
    let mut i = 0;
    while let Some(found) = find(&chars, i, "crate::") {
        i = found + "crate::".len();
        if found > 0 && ident(chars[found - 1]) {
            continue;
        }
        let mut pos = i;
        tree(&chars, &mut pos, vec![], &mut paths);
        i = pos.max(i);
    }
    paths
}

fn find(chars: &[char], from: usize, needle: &str) -> Option<usize> {
    let needle: Vec<char> = needle.chars().collect();
    (from..chars.len().saturating_sub(needle.len() - 1))
        .find(|&i| chars[i..i + needle.len()] == needle[..])
}

/// One use tree at `pos` (after a `::`), below `prefix`.
fn tree(chars: &[char], pos: &mut usize, prefix: Vec<String>, paths: &mut Vec<Vec<String>>) {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let skip_space = |pos: &mut usize| {
        while chars.get(*pos).is_some_and(|c| c.is_whitespace()) {
            *pos += 1;
        }
    };
    let mut path = prefix;
    loop {
        skip_space(pos);
        if chars.get(*pos) == Some(&'{') {
            *pos += 1;
            loop {
                skip_space(pos);
                match chars.get(*pos) {
                    None => return,
                    Some('}') => {
                        *pos += 1;
                        return;
                    }
                    Some(',') => *pos += 1,
                    Some(_) => {
                        let before = *pos;
                        tree(chars, pos, path.clone(), paths);
                        if *pos == before {
                            // Not a tree item (`*`, a stray token): step over it.
                            *pos += 1;
                        }
                    }
                }
            }
        }
        let start = *pos;
        while chars.get(*pos).copied().is_some_and(ident) {
            *pos += 1;
        }
        if *pos == start {
            break;
        }
        path.push(chars[start..*pos].iter().collect());
        if chars.get(*pos) == Some(&':') && chars.get(*pos + 1) == Some(&':') {
            *pos += 2;
        } else {
            break;
        }
    }
    if !path.is_empty() {
        paths.push(path);
    }
}

/// The module graph of `(module, source)` pairs: each module's dependencies among them.
fn graph(files: &[(String, String)]) -> Graph {
    let modules: BTreeSet<&str> = files.iter().map(|(m, _)| m.as_str()).collect();
    let mut graph = Graph::new();
    for (module, source) in files {
        let deps = graph.entry(module.clone()).or_default();
        for path in crate_paths(&code_and_docs(source)) {
            // `self` in a group names the module the group is under.
            let segments: Vec<&str> = path
                .iter()
                .map(String::as_str)
                .filter(|s| *s != "self")
                .collect();
            let target = (1..=segments.len())
                .rev()
                .map(|n| segments[..n].join("::"))
                .find(|m| modules.contains(m.as_str()))
                .unwrap_or_else(|| "crate".to_owned());
            if &target != module {
                deps.insert(target);
            }
        }
    }
    graph
}

/// The strongly connected components of more than one module (Tarjan), each sorted.
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    struct Tarjan<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        found: Vec<Vec<String>>,
    }
    impl<'g> Tarjan<'g> {
        fn visit(&mut self, node: &'g str) {
            let n = self.index.len();
            self.index.insert(node, n);
            self.low.insert(node, n);
            self.stack.push(node);
            self.on_stack.insert(node);
            for next in self.graph.get(node).into_iter().flatten() {
                let next = next.as_str();
                if !self.index.contains_key(next) {
                    self.visit(next);
                    let low = self.low[node].min(self.low[next]);
                    self.low.insert(node, low);
                } else if self.on_stack.contains(next) {
                    let low = self.low[node].min(self.index[next]);
                    self.low.insert(node, low);
                }
            }
            if self.low[node] == self.index[node] {
                let mut component = vec![];
                while let Some(top) = self.stack.pop() {
                    self.on_stack.remove(top);
                    component.push(top.to_owned());
                    if top == node {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut tarjan = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: vec![],
        on_stack: BTreeSet::new(),
        found: vec![],
    };
    for node in graph.keys() {
        if !tarjan.index.contains_key(node.as_str()) {
            tarjan.visit(node);
        }
    }
    tarjan.found
}

/// One cycle through the component's first module, as `a → b → … → a`.
fn a_cycle(graph: &Graph, component: &[String]) -> String {
    let members: BTreeSet<&str> = component.iter().map(String::as_str).collect();
    let start = component[0].as_str();
    // Breadth-first from the start's successors back to it, within the component.
    let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for next in graph.get(node).into_iter().flatten() {
            let next = next.as_str();
            if !members.contains(next) || came_from.contains_key(next) {
                continue;
            }
            came_from.insert(next, node);
            if next == start {
                let mut path = vec![start];
                let mut at = came_from[start];
                while at != start {
                    path.push(at);
                    at = came_from[at];
                }
                path.push(start);
                path.reverse();
                return path.join(" → ");
            }
            queue.push_back(next);
        }
    }
    component.join(", ")
}

fn sources(dir: &Path, root: &Path, files: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            sources(&path, root, files);
        } else if path.extension().is_some_and(|e| e == "rs")
            && let Some(module) = module_of(path.strip_prefix(root).unwrap())
        {
            files.push((module, std::fs::read_to_string(&path).unwrap()));
        }
    }
}

#[test]
fn the_module_graph_has_no_cycle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![];
    sources(&root, &root, &mut files);
    assert!(files.len() > 30, "only {} files under src/", files.len());
    let graph = graph(&files);
    // The graph is read at all: the HTTP layer reaches the state it serves.
    assert!(graph["http"].contains("state"), "{graph:#?}");
    let problems: Vec<String> = cycles(&graph)
        .into_iter()
        .map(|c| {
            let inside: BTreeSet<&str> = c.iter().map(String::as_str).collect();
            let edges: Vec<String> = c
                .iter()
                .map(|m| {
                    let deps: Vec<&str> = graph[m]
                        .iter()
                        .map(String::as_str)
                        .filter(|d| inside.contains(d))
                        .collect();
                    format!("  {m} → {}", deps.join(", "))
                })
                .collect();
            format!(
                "cycle among {}: {}\n{}",
                c.join(", "),
                a_cycle(&graph, &c),
                edges.join("\n")
            )
        })
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Handlers parse, call one domain function and shape its answer: no file under `http/`
/// reaches the store (through the state or by path).
#[test]
fn the_http_layer_makes_no_store_call() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![];
    sources(&root.join("http"), &root, &mut files);
    assert!(
        files.len() > 10,
        "only {} files under src/http/",
        files.len()
    );
    let mut calls = vec![];
    for (module, source) in &files {
        // Without whitespace, a call chained over lines reads as one.
        let text: String = code_and_docs(source)
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        for (at, needle) in text
            .match_indices(".store")
            .chain(text.match_indices("crate::store"))
        {
            let end = at + needle.len();
            if text[end..]
                .chars()
                .next()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
            {
                continue;
            }
            let from = text[..at]
                .char_indices()
                .rev()
                .nth(30)
                .map_or(0, |(i, _)| i);
            let to = text[end..]
                .char_indices()
                .nth(30)
                .map_or(text.len(), |(i, _)| end + i);
            calls.push(format!("{module}: …{}…", &text[from..to]));
        }
    }
    assert!(
        calls.is_empty(),
        "store calls in http/:\n{}",
        calls.join("\n")
    );
}

#[test]
fn cycles_are_found_through_paths_groups_and_doc_links() {
    let file = |m: &str, s: &str| (m.to_owned(), s.to_owned());
    let files = [
        file(
            "a",
            "use crate::{models::{self, X}, b::Y};\n// crate::c is only mentioned\n",
        ),
        file(
            "b",
            "fn f() -> crate::c::Z { todo!() }\nconst S: &str = \"crate::a\";",
        ),
        file(
            "c",
            "/// See [`crate::a::thing`], not `crate::d`.\nfn g<'a>(_: &'a str) {}",
        ),
        file("models", "fn h() { let _ = '\"'; crate::b::f(); }"),
        file("d", "mod e;\nuse crate::d::e::Q;"),
        file("d::e", "use super::R; let _ = r#\"crate::d\"#;"),
    ];
    let graph = graph(&files);
    let deps = |m: &str| graph[m].iter().cloned().collect::<Vec<_>>();
    assert_eq!(deps("a"), ["b", "models"]);
    assert_eq!(deps("b"), ["c"]);
    assert_eq!(deps("c"), ["a"]);
    assert_eq!(deps("models"), ["b"]);
    assert_eq!(deps("d"), ["d::e"]);
    assert!(deps("d::e").is_empty());
    let found = cycles(&graph);
    assert_eq!(found, [["a", "b", "c", "models"]]);
    let cycle = a_cycle(&graph, &found[0]);
    assert!(
        ["a → b → c → a", "a → models → b → c → a"].contains(&cycle.as_str()),
        "{cycle}"
    );
}
