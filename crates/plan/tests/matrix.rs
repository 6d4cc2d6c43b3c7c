//! `strategy.matrix` expansion: the worked examples of GitHub's "Running variations of jobs in
//! a workflow", the examples in GitHub's own `MatrixBuilder`, ordering, nested values, the
//! comparison rules, limits and errors, and job display names.

use expr::{Map, Value};
use plan::matrix::{
    Configuration, MAX_CROSS_PRODUCT, MAX_JOBS, Matrix, MatrixError, configurations, display_name,
    display_suffix, expand,
};

/// An ordered map from `key => value` pairs; values go through `Value::from`.
macro_rules! map {
    ($($k:expr => $v:expr),* $(,)?) => {{
        #[allow(unused_mut)]
        let mut m = Map::new();
        $(m.insert(String::from($k), Value::from($v));)*
        m
    }};
}

/// A list of values, each through `Value::from`.
macro_rules! vals {
    ($($v:expr),* $(,)?) => { vec![$(Value::from($v)),*] };
}

fn dims(d: Vec<(&str, Vec<Value>)>) -> Vec<(String, Vec<Value>)> {
    d.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn matrix(d: Vec<(&str, Vec<Value>)>, include: Vec<Map>, exclude: Vec<Map>) -> Matrix {
    Matrix {
        dimensions: dims(d),
        include,
        exclude,
    }
}

fn ok(m: &Matrix) -> Vec<Map> {
    match expand(m) {
        Ok(v) => v,
        Err(e) => panic!("{m:?} failed: {e}"),
    }
}

fn configs(m: &Matrix) -> Vec<Configuration> {
    match configurations(m) {
        Ok(v) => v,
        Err(e) => panic!("{m:?} failed: {e}"),
    }
}

/// Compares key order too: IndexMap's `==` ignores it.
fn assert_same(got: &[Map], want: &[Map]) {
    let order = |v: &[Map]| -> Vec<Vec<(String, Value)>> {
        v.iter()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .collect()
    };
    assert_eq!(order(got), order(want));
}

#[test]
fn order_follows_declaration() {
    // "Using a matrix strategy": the first variable varies slowest.
    let m = matrix(
        vec![
            ("version", vals![10.0, 12.0, 14.0]),
            ("os", vals!["ubuntu-latest", "windows-latest"]),
        ],
        vec![],
        vec![],
    );
    assert_same(
        &ok(&m),
        &[
            map! {"version" => 10.0, "os" => "ubuntu-latest"},
            map! {"version" => 10.0, "os" => "windows-latest"},
            map! {"version" => 12.0, "os" => "ubuntu-latest"},
            map! {"version" => 12.0, "os" => "windows-latest"},
            map! {"version" => 14.0, "os" => "ubuntu-latest"},
            map! {"version" => 14.0, "os" => "windows-latest"},
        ],
    );
    let three = matrix(
        vec![
            ("a", vals![1.0, 2.0]),
            ("b", vals!["x"]),
            ("c", vals![true, false]),
        ],
        vec![],
        vec![],
    );
    assert_same(
        &ok(&three),
        &[
            map! {"a" => 1.0, "b" => "x", "c" => true},
            map! {"a" => 1.0, "b" => "x", "c" => false},
            map! {"a" => 2.0, "b" => "x", "c" => true},
            map! {"a" => 2.0, "b" => "x", "c" => false},
        ],
    );
}

#[test]
fn single_dimension() {
    let m = matrix(vec![("version", vals![10.0, 12.0, 14.0])], vec![], vec![]);
    assert_same(
        &ok(&m),
        &[
            map! {"version" => 10.0},
            map! {"version" => 12.0},
            map! {"version" => 14.0},
        ],
    );
}

#[test]
fn array_of_objects_dimension() {
    // "Using a multi-dimension matrix": values can be objects.
    let v14 = map! {"version" => 14.0};
    let v20 = map! {"version" => 20.0, "env" => "NODE_OPTIONS=--openssl-legacy-provider"};
    let m = matrix(
        vec![
            ("os", vals!["ubuntu-latest", "macos-latest"]),
            ("node", vals![v14.clone(), v20.clone()]),
        ],
        vec![],
        vec![],
    );
    assert_same(
        &ok(&m),
        &[
            map! {"os" => "ubuntu-latest", "node" => v14.clone()},
            map! {"os" => "ubuntu-latest", "node" => v20.clone()},
            map! {"os" => "macos-latest", "node" => v14},
            map! {"os" => "macos-latest", "node" => v20},
        ],
    );
}

#[test]
fn expanding_configurations_with_include() {
    // "Expanding or adding matrix configurations": npm is added to windows/16 only.
    let m = matrix(
        vec![
            ("os", vals!["windows-latest", "ubuntu-latest"]),
            ("node", vals![12.0, 14.0, 16.0]),
        ],
        vec![map! {"os" => "windows-latest", "node" => 16.0, "npm" => 6.0}],
        vec![],
    );
    let got = configs(&m);
    let values: Vec<Map> = got.iter().map(|c| c.values.clone()).collect();
    assert_same(
        &values,
        &[
            map! {"os" => "windows-latest", "node" => 12.0},
            map! {"os" => "windows-latest", "node" => 14.0},
            map! {"os" => "windows-latest", "node" => 16.0, "npm" => 6.0},
            map! {"os" => "ubuntu-latest", "node" => 12.0},
            map! {"os" => "ubuntu-latest", "node" => 14.0},
            map! {"os" => "ubuntu-latest", "node" => 16.0},
        ],
    );
    // GitHub names the job from the cross-product values, before include extras.
    assert_eq!(got[2].display_suffix, "(windows-latest, 16)");
}

#[test]
fn adding_configurations_with_include() {
    // "Example: Adding configurations": 9 combinations plus windows/17.
    let m = matrix(
        vec![
            (
                "os",
                vals!["macos-latest", "windows-latest", "ubuntu-latest"],
            ),
            ("version", vals![12.0, 14.0, 16.0]),
        ],
        vec![map! {"os" => "windows-latest", "version" => 17.0}],
        vec![],
    );
    let got = ok(&m);
    assert_eq!(got.len(), 10);
    assert_same(
        &got[9..],
        &[map! {"os" => "windows-latest", "version" => 17.0}],
    );
    assert_same(
        &got[..1],
        &[map! {"os" => "macos-latest", "version" => 12.0}],
    );
}

#[test]
fn include_only_matrix() {
    let include = vec![
        map! {"site" => "production", "datacenter" => "site-a"},
        map! {"site" => "staging", "datacenter" => "site-b"},
    ];
    let m = matrix(vec![], include.clone(), vec![]);
    let got = configs(&m);
    let values: Vec<Map> = got.iter().map(|c| c.values.clone()).collect();
    assert_same(&values, &include);
    assert_eq!(got[0].display_suffix, "(production, site-a)");
    assert_eq!(got[1].display_suffix, "(staging, site-b)");

    // Identical entries are not merged.
    let twice = matrix(vec![], vec![map! {"a" => 1.0}, map! {"a" => 1.0}], vec![]);
    assert_same(&ok(&twice), &[map! {"a" => 1.0}, map! {"a" => 1.0}]);
}

#[test]
fn include_rules_worked_example() {
    // The fruit/animal example of `jobs.<job_id>.strategy.matrix.include`, with its six jobs.
    let m = matrix(
        vec![
            ("fruit", vals!["apple", "pear"]),
            ("animal", vals!["cat", "dog"]),
        ],
        vec![
            map! {"color" => "green"},
            map! {"color" => "pink", "animal" => "cat"},
            map! {"fruit" => "apple", "shape" => "circle"},
            map! {"fruit" => "banana"},
            map! {"fruit" => "banana", "animal" => "cat"},
        ],
        vec![],
    );
    let got = configs(&m);
    let values: Vec<Map> = got.iter().map(|c| c.values.clone()).collect();
    assert_same(
        &values,
        &[
            map! {"fruit" => "apple", "animal" => "cat", "color" => "pink", "shape" => "circle"},
            map! {"fruit" => "apple", "animal" => "dog", "color" => "green", "shape" => "circle"},
            map! {"fruit" => "pear", "animal" => "cat", "color" => "pink"},
            map! {"fruit" => "pear", "animal" => "dog", "color" => "green"},
            map! {"fruit" => "banana"},
            map! {"fruit" => "banana", "animal" => "cat"},
        ],
    );
    let suffixes: Vec<&str> = got.iter().map(|c| c.display_suffix.as_str()).collect();
    assert_eq!(
        suffixes,
        [
            "(apple, cat)",
            "(apple, dog)",
            "(pear, cat)",
            "(pear, dog)",
            "(banana)",
            "(banana, cat)"
        ]
    );
}

#[test]
fn include_rules_perl_example() {
    // Seven jobs: five perl versions on ubuntu, two on macos.
    let m = matrix(
        vec![
            ("os", vals!["ubuntu-latest"]),
            ("perl", vals!["5.16", "5.20", "5.26", "5.30", "latest"]),
        ],
        vec![
            map! {"os" => "macos-latest", "perl" => "5.26"},
            map! {"os" => "macos-latest", "perl" => "latest"},
        ],
        vec![],
    );
    let got = ok(&m);
    assert_eq!(got.len(), 7);
    assert_same(
        &got[5..],
        &[
            map! {"os" => "macos-latest", "perl" => "5.26"},
            map! {"os" => "macos-latest", "perl" => "latest"},
        ],
    );
}

#[test]
fn excluding_configurations() {
    // "Excluding matrix configurations": 12 - 1 - 2 = 9 jobs.
    let m = matrix(
        vec![
            ("os", vals!["macos-latest", "windows-latest"]),
            ("version", vals![12.0, 14.0, 16.0]),
            ("environment", vals!["staging", "production"]),
        ],
        vec![],
        vec![
            map! {"os" => "macos-latest", "version" => 12.0, "environment" => "production"},
            map! {"os" => "windows-latest", "version" => 16.0},
        ],
    );
    let got = ok(&m);
    assert_eq!(got.len(), 9);
    let has = |os: &str, version: f64, env: &str| {
        got.contains(&map! {"os" => os, "version" => version, "environment" => env})
    };
    assert!(!has("macos-latest", 12.0, "production"));
    assert!(has("macos-latest", 12.0, "staging"));
    assert!(!has("windows-latest", 16.0, "staging"));
    assert!(!has("windows-latest", 16.0, "production"));
    assert!(has("windows-latest", 14.0, "production"));
}

#[test]
fn include_is_processed_after_exclude() {
    // "All include combinations are processed after exclude", so include can add back.
    let m = matrix(
        vec![
            ("os", vals!["linux", "windows"]),
            ("arch", vals!["x64", "arm64"]),
        ],
        vec![map! {"os" => "windows", "arch" => "arm64"}],
        vec![map! {"os" => "windows", "arch" => "arm64"}],
    );
    assert_same(
        &ok(&m),
        &[
            map! {"os" => "linux", "arch" => "x64"},
            map! {"os" => "linux", "arch" => "arm64"},
            map! {"os" => "windows", "arch" => "x64"},
            map! {"os" => "windows", "arch" => "arm64"},
        ],
    );
    // An extras-only include matches every surviving combination; when none survive it
    // stands alone.
    let all_gone = matrix(
        vec![("os", vals!["linux"])],
        vec![map! {"color" => "green"}],
        vec![map! {"os" => "linux"}],
    );
    assert_same(&ok(&all_gone), &[map! {"color" => "green"}]);
    // Everything excluded and nothing included: no jobs.
    let nothing = matrix(
        vec![("os", vals!["linux"])],
        vec![],
        vec![map! {"os" => "linux"}],
    );
    assert!(ok(&nothing).is_empty());
}

#[test]
fn github_matrix_builder_examples() {
    let base = || {
        vec![
            ("arch", vals!["x64", "x86"]),
            ("os", vals!["linux", "windows"]),
        ]
    };
    let exclude = matrix(
        base(),
        vec![],
        vec![map! {"arch" => "x86", "os" => "linux"}],
    );
    assert_same(
        &ok(&exclude),
        &[
            map! {"arch" => "x64", "os" => "linux"},
            map! {"arch" => "x64", "os" => "windows"},
            map! {"arch" => "x86", "os" => "windows"},
        ],
    );
    let extra = matrix(
        base(),
        vec![map! {"arch" => "x64", "os" => "linux", "publish" => true}],
        vec![],
    );
    assert_same(
        &ok(&extra)[..1],
        &[map! {"arch" => "x64", "os" => "linux", "publish" => true}],
    );
    // An entry of dimension keys only adds nothing where it matches, and stands alone where
    // it matches nothing.
    let vectors = matrix(
        base(),
        vec![map! {"arch" => "x64"}, map! {"os" => "macos"}],
        vec![],
    );
    let got = ok(&vectors);
    assert_eq!(got.len(), 5);
    assert_same(&got[4..], &[map! {"os" => "macos"}]);
}

#[test]
fn include_never_overwrites_dimension_values() {
    let m = matrix(
        vec![("os", vals!["linux"]), ("node", vals![16.0])],
        // Conflicts on `node`: becomes its own combination, linux/16 is untouched.
        vec![map! {"os" => "linux", "node" => 18.0, "extra" => "x"}],
        vec![],
    );
    assert_same(
        &ok(&m),
        &[
            map! {"os" => "linux", "node" => 16.0},
            map! {"os" => "linux", "node" => 18.0, "extra" => "x"},
        ],
    );
}

#[test]
fn later_include_extras_overwrite_earlier_ones() {
    let m = matrix(
        vec![("os", vals!["linux", "windows"])],
        vec![
            map! {"Shell" => "bash", "tier" => 1.0},
            map! {"os" => "windows", "shell" => "pwsh"},
        ],
        vec![],
    );
    // Keys are case-insensitive: `shell` overwrites `Shell` in place, keeping its spelling.
    assert_same(
        &ok(&m),
        &[
            map! {"os" => "linux", "Shell" => "bash", "tier" => 1.0},
            map! {"os" => "windows", "Shell" => "pwsh", "tier" => 1.0},
        ],
    );
}

#[test]
fn unmatched_include_puts_dimension_keys_first() {
    let m = matrix(
        vec![("fruit", vals!["apple"]), ("animal", vals!["cat"])],
        vec![map! {"color" => "pink", "animal" => "dog", "fruit" => "banana"}],
        vec![],
    );
    let got = configs(&m);
    assert_same(
        &[got[1].values.clone()],
        &[map! {"animal" => "dog", "fruit" => "banana", "color" => "pink"}],
    );
    assert_eq!(got[1].display_suffix, "(dog, banana, pink)");
}

#[test]
fn nested_values_match_partially_and_deeply() {
    let v14 = map! {"version" => 14.0};
    let v20 = map! {"version" => 20.0, "env" => "legacy", "flags" => vals!["a", "b"]};
    let base = || {
        vec![
            ("os", vals!["linux"]),
            ("node", vals![v14.clone(), v20.clone()]),
        ]
    };

    // A partial nested object matches.
    let exclude = matrix(
        base(),
        vec![],
        vec![map! {"node" => map! {"version" => 20.0}}],
    );
    assert_same(
        &ok(&exclude),
        &[map! {"os" => "linux", "node" => v14.clone()}],
    );
    // Every leaf must agree.
    let mismatch = matrix(
        base(),
        vec![],
        vec![map! {"node" => map! {"version" => 20.0, "env" => "new"}}],
    );
    assert_eq!(ok(&mismatch).len(), 2);
    // Arrays compare by position: a prefix matches, as in GitHub's leaf-wise filters.
    let prefix = matrix(
        base(),
        vec![],
        vec![map! {"node" => map! {"flags" => vals!["a"]}}],
    );
    assert_same(
        &ok(&prefix),
        &[map! {"os" => "linux", "node" => v14.clone()}],
    );
    let wrong_index = matrix(
        base(),
        vec![],
        vec![map! {"node" => map! {"flags" => vals!["b"]}}],
    );
    assert_eq!(ok(&wrong_index).len(), 2);
    // A nested include filter picks the combination and adds extras to it.
    let include = matrix(
        base(),
        vec![map! {"node" => map! {"version" => 14.0}, "lts" => false}],
        vec![],
    );
    assert_same(
        &ok(&include),
        &[
            map! {"os" => "linux", "node" => v14.clone(), "lts" => false},
            map! {"os" => "linux", "node" => v20.clone()},
        ],
    );
    // A literal never equals an object.
    let scalar_vs_object = matrix(base(), vec![], vec![map! {"node" => "14"}]);
    assert_eq!(ok(&scalar_vs_object).len(), 2);
}

#[test]
fn comparisons_use_expression_equality() {
    let base = || {
        vec![
            ("os", vals!["ubuntu-latest", "windows-latest"]),
            ("node", vals![12.0, 14.0]),
        ]
    };
    // Strings compare case-insensitively and keys are case-insensitive.
    let case = matrix(base(), vec![], vec![map! {"OS" => "Ubuntu-Latest"}]);
    assert!(
        ok(&case)
            .iter()
            .all(|m| m.get("os") != Some(&Value::from("ubuntu-latest")))
    );
    assert_eq!(ok(&case).len(), 2);
    // Mixed types compare as numbers.
    let numeric_string = matrix(base(), vec![], vec![map! {"node" => "12"}]);
    assert_eq!(ok(&numeric_string).len(), 2);
    let padded = matrix(base(), vec![], vec![map! {"node" => " 0xC "}]);
    assert_eq!(ok(&padded).len(), 2);
    let not_numeric = matrix(base(), vec![], vec![map! {"node" => "twelve"}]);
    assert_eq!(ok(&not_numeric).len(), 4);
    // The include filter uses the same rules, and keeps the dimension's own value.
    let include = matrix(base(), vec![map! {"Node" => "14", "npm" => 6.0}], vec![]);
    let got = ok(&include);
    assert_eq!(got.len(), 4);
    assert_same(
        &got[1..2],
        &[map! {"os" => "ubuntu-latest", "node" => 14.0, "npm" => 6.0}],
    );
    // Booleans and null coerce to numbers too: true == 1, null == 0 == ''.
    let flags = matrix(
        vec![("flag", vals![true, false]), ("label", vals!["", "x"])],
        vec![],
        vec![map! {"flag" => 1.0, "label" => Value::Null}],
    );
    assert_same(
        &ok(&flags),
        &[
            map! {"flag" => true, "label" => "x"},
            map! {"flag" => false, "label" => ""},
            map! {"flag" => false, "label" => "x"},
        ],
    );
    // Digits beyond the 15th are lost when GitHub writes the literal into an expression.
    let precise = matrix(
        vec![("v", vals![0.3])],
        vec![],
        vec![map! {"v" => 0.1 + 0.2}],
    );
    assert!(ok(&precise).is_empty());
}

#[test]
fn limits() {
    let values = |n: usize| (0..n).map(|i| Value::from(i as f64)).collect::<Vec<_>>();
    let at_limit = matrix(vec![("a", values(16)), ("b", values(16))], vec![], vec![]);
    assert_eq!(ok(&at_limit).len(), MAX_JOBS);

    let over = matrix(vec![("a", values(16)), ("b", values(17))], vec![], vec![]);
    assert_eq!(
        expand(&over),
        Err(MatrixError::TooManyJobs { limit: MAX_JOBS })
    );

    // The limit is on the jobs produced: excludes can bring a product under it ...
    let trimmed = matrix(
        vec![("a", values(16)), ("b", values(17))],
        vec![],
        vec![map! {"b" => 0.0}],
    );
    assert_eq!(ok(&trimmed).len(), 256);
    // ... and unmatched includes count.
    let plus_one = matrix(
        vec![("a", values(16)), ("b", values(16))],
        vec![map! {"a" => 99.0}],
        vec![],
    );
    assert_eq!(
        expand(&plus_one),
        Err(MatrixError::TooManyJobs { limit: MAX_JOBS })
    );
    let many_includes = matrix(
        vec![],
        (0..257).map(|i| map! {"i" => i as f64}).collect(),
        vec![],
    );
    assert_eq!(
        expand(&many_includes),
        Err(MatrixError::TooManyJobs { limit: MAX_JOBS })
    );

    // A cross product too large to walk is refused before any work.
    let huge = Matrix {
        dimensions: (0..21)
            .map(|i| (format!("k{i}"), vals![1.0, 2.0]))
            .collect(),
        ..Matrix::default()
    };
    assert_eq!(
        expand(&huge),
        Err(MatrixError::CrossProductTooLarge {
            limit: MAX_CROSS_PRODUCT
        })
    );
    let overflow = Matrix {
        dimensions: (0..8).map(|i| (format!("k{i}"), values(300))).collect(),
        ..Matrix::default()
    };
    assert_eq!(
        expand(&overflow),
        Err(MatrixError::CrossProductTooLarge {
            limit: MAX_CROSS_PRODUCT
        })
    );
}

#[test]
fn errors() {
    let err = |m: Matrix| expand(&m).expect_err("should be rejected");

    assert_eq!(err(Matrix::default()), MatrixError::NoVectors);
    assert_eq!(
        err(matrix(vec![], vec![], vec![map! {"os" => "x"}])),
        MatrixError::NoVectors
    );
    assert_eq!(
        err(matrix(
            vec![("os", vals!["a"]), ("node", vec![])],
            vec![],
            vec![]
        )),
        MatrixError::EmptyDimension { key: "node".into() }
    );
    assert_eq!(
        err(matrix(
            vec![("os", vals!["a"]), ("OS", vals!["b"])],
            vec![],
            vec![]
        )),
        MatrixError::DuplicateKey {
            first: "os".into(),
            second: "OS".into()
        }
    );
    assert_eq!(
        err(matrix(
            vec![],
            vec![map! {"site" => "a", "Site" => "b"}],
            vec![]
        )),
        MatrixError::DuplicateKey {
            first: "site".into(),
            second: "Site".into()
        }
    );
    assert_eq!(
        err(matrix(
            vec![("os", vals!["a"])],
            vec![map! {"x" => 1.0}, Map::new()],
            vec![]
        )),
        MatrixError::EmptyInclude { index: 1 }
    );
    assert_eq!(
        err(matrix(vec![("os", vals!["a"])], vec![], vec![Map::new()])),
        MatrixError::EmptyExclude { index: 0 }
    );
    // GitHub rejects an exclude naming a key that is not a dimension (include just adds it).
    assert_eq!(
        err(matrix(
            vec![("os", vals!["a"])],
            vec![map! {"color" => "x"}],
            vec![map! {"os" => "a"}, map! {"os" => "a", "color" => "x"}],
        )),
        MatrixError::UnknownExcludeKey {
            index: 1,
            key: "color".into()
        }
    );
    // ... but matches dimension names case-insensitively.
    assert!(
        expand(&matrix(
            vec![("os", vals!["a", "b"])],
            vec![],
            vec![map! {"OS" => "a"}]
        ))
        .is_ok()
    );

    // Messages are for people and count entries from 1.
    assert_eq!(
        MatrixError::EmptyInclude { index: 1 }.to_string(),
        "matrix include entry 2 does not contain any values"
    );
    assert_eq!(
        MatrixError::UnknownExcludeKey {
            index: 0,
            key: "color".into()
        }
        .to_string(),
        "matrix exclude key 'color' does not match any key within the matrix"
    );
    assert_eq!(
        MatrixError::EmptyDimension { key: "node".into() }.to_string(),
        "matrix vector 'node' does not contain any values"
    );
    assert!(
        MatrixError::TooManyJobs { limit: 256 }
            .to_string()
            .contains("256")
    );
}

#[test]
fn display_suffixes() {
    assert_eq!(
        display_suffix(&map! {"python" => "3.11", "os" => "ubuntu-latest"}),
        "(3.11, ubuntu-latest)"
    );
    // YAML's 3.10 is the number 3.1, and GitHub shows it that way.
    assert_eq!(
        display_suffix(&map! {"python" => 3.10, "node" => 16.0}),
        "(3.1, 16)"
    );
    assert_eq!(
        display_suffix(&map! {"big" => 1e21, "small" => 0.00001}),
        "(1E+21, 1E-05)"
    );
    assert_eq!(
        display_suffix(&map! {"flag" => true, "other" => false}),
        "(true, false)"
    );
    // Null and empty strings are left out; nothing left means no suffix at all.
    assert_eq!(
        display_suffix(&map! {"a" => Value::Null, "b" => "", "c" => "x"}),
        "(x)"
    );
    assert_eq!(display_suffix(&map! {"a" => Value::Null}), "");
    assert_eq!(display_suffix(&Map::new()), "");
    // Nested objects and arrays contribute their scalars depth first; keys never appear.
    let node = map! {"version" => 20.0, "env" => "legacy", "tags" => vals!["a", Value::Null, map! {"deep" => true}]};
    assert_eq!(
        display_suffix(&map! {"os" => "linux", "node" => node, "empty" => vals![]}),
        "(linux, 20, legacy, a, true)"
    );
}

#[test]
fn display_names() {
    assert_eq!(display_name("build", "(linux, 16)"), "build (linux, 16)");
    assert_eq!(display_name("build", ""), "build");
    let long = "x".repeat(120);
    let name = display_name("test", &format!("({long})"));
    assert_eq!(name.chars().count(), 100);
    assert!(name.starts_with("test (xxx"));
    assert!(name.ends_with("..."));
    let exactly = "y".repeat(100);
    assert_eq!(display_name(&exactly, ""), exactly);
    // Counted in UTF-16 code units, never cutting a character in half.
    let emoji = "😀".repeat(60);
    let name = display_name(&emoji, "");
    assert_eq!(name.encode_utf16().count(), 99);
    assert!(name.ends_with("😀..."));
}
