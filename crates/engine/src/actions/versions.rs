//! Toolchain versions as the setup actions compare them: `3.11` matches `3.11.7`, `20.x` any
//! 20, and versions sort as numbers (3.9 before 3.10).

/// Whether `version` (`3.11.7`) is what `spec` (`3.11`, `3.x`, `v20`) asks for: each part
/// of the spec equal, or `x`/`*`.
pub(super) fn matches(spec: &str, version: &str) -> bool {
    let spec = spec.trim().trim_start_matches('v');
    let want: Vec<&str> = spec.split('.').collect();
    let have: Vec<&str> = version.split('.').collect();
    want.iter()
        .enumerate()
        .all(|(i, w)| *w == "x" || *w == "*" || have.get(i) == Some(w))
}

/// Versions compared part by part as numbers.
pub(super) fn compare(a: &str, b: &str) -> std::cmp::Ordering {
    let parse = |v: &str| {
        v.trim_start_matches('v')
            .split('.')
            .map(|p| p.parse::<u64>().unwrap_or(0))
            .collect::<Vec<_>>()
    };
    parse(a).cmp(&parse(b))
}

/// What a job is told when no installed `tool` matches `spec`: the versions found, in
/// version order.
pub(super) fn not_installed(tool: &str, spec: &str, mut versions: Vec<&str>) -> String {
    versions.sort_unstable_by(|a, b| compare(a, b));
    versions.dedup();
    format!(
        "{tool} {spec} is not installed on this machine; found: {}",
        if versions.is_empty() {
            "none".to_owned()
        } else {
            versions.join(", ")
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_versions_found_are_listed_as_versions() {
        assert_eq!(
            not_installed(
                "Python",
                "2.7",
                vec!["3.10.2", "3.9.18", "3.11.7", "3.9.18"]
            ),
            "Python 2.7 is not installed on this machine; found: 3.9.18, 3.10.2, 3.11.7"
        );
        assert_eq!(
            not_installed("Node", "14", Vec::new()),
            "Node 14 is not installed on this machine; found: none"
        );
    }

    #[test]
    fn specs() {
        assert!(matches("3.11", "3.11.7"));
        assert!(matches("3.x", "3.9.1"));
        assert!(matches("3", "3.12.0"));
        assert!(matches("v20", "20.20.2"));
        assert!(!matches("3.1", "3.11.7"));
        assert!(!matches("3.10", "3.11.7"));
    }
}
