//! ARCHITECTURE.md tells the truth about the crates: its dependency table is what each
//! crate's manifest says, and its diagram names every crate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Each workspace crate and the workspace crates its `[dependencies]` name.
fn manifests() -> BTreeMap<String, BTreeSet<String>> {
    let crates = root().join("crates");
    let names: BTreeSet<String> = std::fs::read_dir(&crates)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| crates.join(n).join("Cargo.toml").is_file())
        .collect();
    names
        .iter()
        .map(|name| {
            let text = std::fs::read_to_string(crates.join(name).join("Cargo.toml")).unwrap();
            let mut deps = BTreeSet::new();
            let mut in_deps = false;
            for line in text.lines() {
                let line = line.trim();
                if line.starts_with('[') {
                    in_deps = line == "[dependencies]";
                    continue;
                }
                if !in_deps {
                    continue;
                }
                let key = line
                    .split(['=', '.', ' '])
                    .next()
                    .unwrap_or_default()
                    .trim();
                if names.contains(key) {
                    deps.insert(key.to_owned());
                }
            }
            (name.clone(), deps)
        })
        .collect()
}

#[test]
fn the_dependency_table_and_the_diagram_match_the_manifests() {
    let doc = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let start = doc
        .find("| crate | depends on |")
        .expect("ARCHITECTURE.md has the dependency table");
    let mut table = BTreeMap::new();
    for line in doc[start..].lines().skip(2) {
        if !line.starts_with('|') {
            break;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').collect();
        let name = cells[0].trim().trim_matches('`').to_owned();
        let deps: BTreeSet<String> = cells[1]
            .split(',')
            .map(|d| d.trim().trim_matches('`').to_owned())
            .filter(|d| !d.is_empty())
            .collect();
        table.insert(name, deps);
    }
    assert_eq!(
        table,
        manifests(),
        "ARCHITECTURE.md's table against Cargo.toml"
    );
    let diagram_start = doc.find("```\n").expect("a diagram");
    let diagram_end = doc[diagram_start + 4..].find("```").unwrap() + diagram_start + 4;
    let diagram = &doc[diagram_start..diagram_end];
    for name in manifests().keys() {
        assert!(
            diagram.contains(name.as_str()),
            "the diagram shows `{name}`"
        );
    }
}

/// The `.rs` files under `dir`, recursively.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The lines of a source file that are not its tests: those before its first test module
/// (`#[cfg(test)]` at the start of a line; a test module comes last).
fn lines_outside_tests(text: &str) -> usize {
    text.lines()
        .take_while(|l| !l.starts_with("#[cfg(test)]"))
        .count()
}

#[test]
fn no_source_file_outside_tests_is_over_800_lines() {
    assert_eq!(lines_outside_tests("a\nb\n#[cfg(test)]\nmod tests {}\n"), 2);
    let mut files = Vec::new();
    for krate in std::fs::read_dir(root().join("crates")).unwrap() {
        let src = krate.unwrap().path().join("src");
        if src.is_dir() {
            sources(&src, &mut files);
        }
    }
    assert!(files.len() > 50, "only {} source files found", files.len());
    let over: Vec<String> = files
        .iter()
        // A module's tests in a file of their own.
        .filter(|p| p.file_name().is_some_and(|n| n != "tests.rs"))
        .filter_map(|p| {
            let n = lines_outside_tests(&std::fs::read_to_string(p).unwrap());
            (n > 800).then(|| format!("{} ({n} lines)", p.display()))
        })
        .collect();
    assert!(
        over.is_empty(),
        "source files over 800 lines outside their tests: {over:?}"
    );
}

/// On Linux with glibc the program is linked statically (.cargo/config.toml): it has no
/// program interpreter (the dynamic loader) and needs no shared library, so it starts without
/// mapping and binding any, and runs as a deploy agent on hosts whatever their C library.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn the_program_is_linked_statically() {
    let elf = std::fs::read(env!("CARGO_BIN_EXE_pipewright")).unwrap();
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file");
    let u16_at = |o: usize| usize::from(u16::from_le_bytes([elf[o], elf[o + 1]]));
    let u64_at =
        |o: usize| usize::try_from(u64::from_le_bytes(elf[o..o + 8].try_into().unwrap())).unwrap();
    // The program headers (64-bit little-endian ELF): their types.
    let (at, size, count) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    let types: Vec<u32> = (0..count)
        .map(|i| {
            let o = at + i * size;
            u32::from_le_bytes(elf[o..o + 4].try_into().unwrap())
        })
        .collect();
    const PT_LOAD: u32 = 1;
    const PT_DYNAMIC: u32 = 2;
    const PT_INTERP: u32 = 3;
    assert!(types.contains(&PT_LOAD), "no loadable segment: {types:?}");
    assert!(
        !types.contains(&PT_INTERP),
        "the program names a dynamic loader: it is linked dynamically"
    );
    // Position-independent still (its address is random): its dynamic section holds only
    // its own relocations, no library it needs.
    assert!(types.contains(&PT_DYNAMIC), "not position-independent");
    let needed = std::process::Command::new("readelf")
        .args(["-d", env!("CARGO_BIN_EXE_pipewright")])
        .output();
    if let Ok(out) = needed {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            !text.contains("(NEEDED)"),
            "it needs shared libraries:\n{text}"
        );
    }
}
