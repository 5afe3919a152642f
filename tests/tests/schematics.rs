//! The diagrams (`schematics/`): every committed SVG is what Graphviz renders from the `.dot`
//! beside it, and every `.dot` has one. (That the state diagrams' `.dot` files are what the
//! code draws is the orchestra's own test, `diagram::tests`.) Needs Debian's `graphviz`
//! (`dot`), which `.ci/run` installs.

use std::path::Path;
use std::process::Command;

use oscied_e2e::workspace_root;

fn render(dot: &Path) -> Vec<u8> {
    let out = Command::new("dot")
        .arg("-Tsvg")
        .arg(dot)
        .output()
        .unwrap_or_else(|e| {
            panic!("could not run Graphviz's `dot` ({e}): apt-get install graphviz")
        });
    assert!(
        out.status.success(),
        "dot -Tsvg {}: {}",
        dot.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn every_committed_svg_is_its_dot_rendered() {
    let dir = workspace_root().join("schematics");
    let mut dots: Vec<_> = std::fs::read_dir(&dir)
        .expect("schematics/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "dot"))
        .collect();
    dots.sort();
    assert!(dots.len() >= 6, "the diagrams: {dots:?}");
    let mut stale = vec![];
    for dot in &dots {
        let svg = dot.with_extension("svg");
        let committed = std::fs::read(&svg).unwrap_or_default();
        if committed != render(dot) {
            stale.push(svg.file_name().map(|n| n.to_string_lossy().into_owned()));
        }
    }
    assert!(
        stale.is_empty(),
        "stale or missing SVGs {stale:?}: run schematics/render (dot -Tsvg X.dot -o X.svg)"
    );
    // No SVG without its source.
    for entry in std::fs::read_dir(&dir).expect("schematics/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|x| x == "svg") {
            assert!(
                path.with_extension("dot").exists(),
                "{} has no .dot",
                path.display()
            );
        }
    }
}
