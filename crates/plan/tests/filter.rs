//! GitHub's filter patterns: every example of the "Filter pattern cheat sheet" and of the
//! `branches`/`tags`/`paths` sections of "Workflow syntax for GitHub Actions", plus the edges.

use plan::filter::{Filter, Pattern, PatternError, PatternKind};

use PatternKind::{Path, Ref};

fn filter(patterns: &[&str], kind: PatternKind) -> Filter {
    let owned: Vec<String> = patterns.iter().map(|p| (*p).to_owned()).collect();
    match Filter::new(&owned, kind) {
        Ok(f) => f,
        Err((i, e)) => panic!("pattern {i} of {patterns:?} rejected: {e} at {}", e.offset),
    }
}

/// (patterns, kind, names that match, names that do not)
type Case = (
    &'static [&'static str],
    PatternKind,
    &'static [&'static str],
    &'static [&'static str],
);

fn check(cases: &[Case]) {
    for (patterns, kind, yes, no) in cases {
        let f = filter(patterns, *kind);
        for name in *yes {
            assert!(f.matches(name), "{patterns:?} should match {name:?}");
        }
        for name in *no {
            assert!(!f.matches(name), "{patterns:?} should not match {name:?}");
        }
    }
}

#[test]
fn cheat_sheet_branches_and_tags() {
    check(&[
        (
            &["feature/*"],
            Ref,
            &["feature/my-branch", "feature/your-branch"],
            &[
                "feature/beta-a/my-branch",
                "feature",
                "features/x",
                "x/feature/y",
            ],
        ),
        (
            &["feature/**"],
            Ref,
            &[
                "feature/beta-a/my-branch",
                "feature/your-branch",
                "feature/mona/the/octocat",
            ],
            // `docs/**` needs the slash: the directory name alone is not inside it.
            &["feature", "features/x"],
        ),
        (
            &["main", "releases/mona-the-octocat"],
            Ref,
            &["main", "releases/mona-the-octocat"],
            &["main2", "Main", "releases/mona", "x/main"],
        ),
        (
            &["*"],
            Ref,
            &["main", "releases"],
            &["releases/v1", "feature/x"],
        ),
        (
            &["**"],
            Ref,
            &["all/the/branches", "every/tag", "main"],
            &[],
        ),
        (
            &["*feature"],
            Ref,
            &["mona-feature", "feature", "ver-10-feature"],
            &["feature-x", "a/feature"],
        ),
        (
            &["v2*"],
            Ref,
            &["v2", "v2.0", "v2.9"],
            &["v3", "v12", "v2/x"],
        ),
        (
            &["v[12].[0-9]+.[0-9]+"],
            Ref,
            &["v1.10.1", "v2.0.0", "v1.0.123"],
            &[
                "v3.0.0",
                "v1.x.1",
                "v1..1",
                "v1.10.1-beta",
                "v12.0.0",
                "v1.10",
            ],
        ),
    ]);
}

#[test]
fn cheat_sheet_paths() {
    check(&[
        (
            &["*"],
            Path,
            &["README.md", "server.rb"],
            &["docs/README.md"],
        ),
        (
            &["*.jsx?"],
            Path,
            &["page.js", "page.jsx"],
            &["page.jsxx", "page.j", "src/page.js"],
        ),
        (&["**"], Path, &["all/the/files.md", "README.md"], &[]),
        (
            &["*.js"],
            Path,
            &["app.js", "index.js"],
            &["js/index.js", "app.jsx"],
        ),
        (
            &["**.js"],
            Path,
            &["index.js", "js/index.js", "src/js/app.js"],
            &["index.jsx", "js"],
        ),
        (
            &["docs/*"],
            Path,
            &["docs/README.md", "docs/file.txt"],
            &["docs/mona/octocat.txt", "docs", "README.md"],
        ),
        (
            &["docs/**"],
            Path,
            &["docs/README.md", "docs/mona/octocat.txt"],
            &["docs", "mydocs/x", "src/docs/x"],
        ),
        (
            &["docs/**/*.md"],
            Path,
            &[
                "docs/README.md",
                "docs/mona/hello-world.md",
                "docs/a/markdown/file.md",
            ],
            &["docs/a.txt", "README.md", "src/docs/a.md"],
        ),
        (
            &["**/docs/**"],
            Path,
            &[
                "docs/hello.md",
                "dir/docs/my-file.txt",
                "space/docs/plan/space.doc",
            ],
            &["mydocs/x", "docs", "dir/docs"],
        ),
        (
            &["**/README.md"],
            Path,
            &["README.md", "js/README.md", "a/b/README.md"],
            &["xREADME.md"],
        ),
        (
            &["**/*src/**"],
            Path,
            &["a/src/app.js", "my-src/code/js/app.js", "src/x"],
            &["a/source/app.js", "src"],
        ),
        (
            &["**/*-post.md"],
            Path,
            &["my-post.md", "path/their-post.md"],
            &["post.md"],
        ),
        (
            &["**/migrate-*.sql"],
            Path,
            &[
                "migrate-10909.sql",
                "db/migrate-v1.0.sql",
                "db/sept/migrate-v1.sql",
            ],
            &["db/migrate/v1.sql", "migrate-1.sqlx"],
        ),
        (
            &["*.md", "!README.md"],
            Path,
            &["hello.md"],
            &["README.md", "docs/hello.md"],
        ),
        (
            &["*.md", "!README.md", "README*"],
            Path,
            &["hello.md", "README.md", "README.doc"],
            &["docs/hello.md"],
        ),
    ]);
}

#[test]
fn documented_include_exclude_examples() {
    check(&[
        // on.<push|pull_request>.branches, "Including and excluding branches"
        (
            &["releases/**", "!releases/**-alpha"],
            Ref,
            &["releases/10", "releases/beta/mona"],
            &["releases/10-alpha", "releases/beta/3-alpha", "main"],
        ),
        // on.push.tags, "Including branches and tags"
        (
            &["v2", "v1.*"],
            Ref,
            &["v2", "v1.9.1", "v1."],
            &["v1", "v10", "v2.0"],
        ),
        (
            &["main", "mona/octocat", "releases/**"],
            Ref,
            &["mona/octocat", "releases/10"],
            &["mona"],
        ),
        // branches-ignore: these are the refs that do NOT run.
        (
            &["mona/octocat", "releases/**-alpha"],
            Ref,
            &["releases/beta/3-alpha"],
            &["beta/3-alpha"],
        ),
        // paths, "Including and excluding paths"
        (
            &["sub-project/**", "!sub-project/docs/**"],
            Path,
            &["sub-project/index.js", "sub-project/src/index.js"],
            &["sub-project/docs/readme.md"],
        ),
    ]);
}

#[test]
fn ordering_decides() {
    check(&[
        // Re-inclusion after exclusion.
        (
            &["**", "!docs/**", "docs/keep/**"],
            Path,
            &["src/x", "docs/keep/a.md"],
            &["docs/a.md", "docs/other/keep/a.md"],
        ),
        // A negation before any positive pattern removes nothing the later one lets in.
        (&["!main", "*"], Ref, &["main", "dev"], &[]),
        // A filter of negations only matches nothing.
        (&["!main"], Ref, &[], &["main", "dev"]),
        (&["!a/**", "!b/**"], Path, &[], &["a/x", "c/x"]),
        // Excluded twice, re-included, excluded again.
        (
            &["*", "!v*", "v1*", "!v1-rc*"],
            Ref,
            &["main", "v1.0"],
            &["v2", "v1-rc1"],
        ),
    ]);
    let empty = filter(&[], Ref);
    assert!(!empty.matches("main"));
}

#[test]
fn question_and_plus_apply_to_the_preceding_character() {
    check(&[
        (&["ab?c"], Ref, &["ac", "abc"], &["abbc", "ab?c"]),
        (&["ab+c"], Ref, &["abc", "abbbc"], &["ac", "ab+c"]),
        (&["a/?b"], Path, &["ab", "a/b"], &["a//b"]),
        (&["[0-9]?x"], Ref, &["x", "5x"], &["55x"]),
        (&["v[0-9]+"], Ref, &["v1", "v123"], &["v", "v1a"]),
        (&["a\\*?"], Ref, &["a", "a*"], &["ab", "a**"]),
        (&["a?b?c?"], Ref, &["", "a", "ac", "abc"], &["cb", "aa"]),
        (&["é+"], Ref, &["é", "ééé"], &[""]),
    ]);
}

#[test]
fn escapes_and_literals() {
    check(&[
        (&["\\!file"], Path, &["!file"], &["file"]),
        (
            &["escape\\\\backslash"],
            Path,
            &["escape\\backslash"],
            &["escapebackslash"],
        ),
        (&["a\\*b"], Path, &["a*b"], &["axb", "ab"]),
        (&["\\[x\\]"], Path, &["[x]"], &["x"]),
        (&["c\\+\\+"], Path, &["c++"], &["c", "cc"]),
        (&["v1\\?"], Ref, &["v1?"], &["v1", "v"]),
        // Only special characters can be escaped; a backslash before anything else is kept.
        (&["foo\\bar"], Path, &["foo\\bar"], &["foobar"]),
        (&["foo\\"], Path, &["foo\\"], &["foo"]),
        // `!` is special only as the first character, `]` only inside a set.
        (&["a!b"], Path, &["a!b"], &["ab"]),
        (&["!!x"], Path, &[], &["!x", "x"]),
        (&["a]"], Path, &["a]"], &["a"]),
        // `.` is a plain character.
        (&[".yml"], Path, &[".yml"], &["fyml"]),
        (&["v1.*"], Ref, &["v1.2"], &["v102"]),
        // Case-sensitive.
        (&["Main"], Ref, &["Main"], &["main", "MAIN"]),
        (&["[A-Z]x"], Ref, &["Ax", "Zx"], &["ax"]),
        (&["café/*"], Path, &["café/menu"], &["cafe/menu"]),
        (&["a b"], Path, &["a b"], &["ab"]),
    ]);
}

#[test]
fn double_star_slash_only_at_a_segment_start() {
    check(&[
        (
            &["a/**/b"],
            Path,
            &["a/b", "a/x/b", "a/x/y/b"],
            &["a/xb", "ab", "a/b/c"],
        ),
        // In the middle of a segment `**` is just "anything", and the `/` is literal.
        (&["a**/b"], Path, &["a/b", "ax/b", "ax/y/b"], &["ab", "axb"]),
        (&["**/**/x"], Path, &["x", "a/x", "a/b/x"], &["ax"]),
        (&["***"], Path, &["", "a/b"], &[]),
        (&["docs/"], Path, &["docs/"], &["docs", "docs/a"]),
    ]);
}

#[test]
fn negated_pattern_api() {
    let p = Pattern::new("!docs/**", Path).expect("valid");
    assert!(p.is_negated());
    assert_eq!(p.source(), "!docs/**");
    assert_eq!(p.kind(), Path);
    // `matches` ignores the negation; Filter gives it meaning.
    assert!(p.matches("docs/a.md"));
    assert!(!p.matches("src/a.rs"));
    let p = Pattern::new("\\!docs", Path).expect("valid");
    assert!(!p.is_negated());
}

#[test]
fn any_and_all() {
    let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    // paths: runs if at least one changed file is included.
    let paths = filter(&["**.js"], Path);
    assert!(paths.matches_any(&strings(&["README.md", "src/app.js"])));
    assert!(!paths.matches_any(&strings(&["README.md"])));
    assert!(!paths.matches_any(&[]));
    // paths-ignore: does not run if every changed file is ignored.
    let ignore = filter(&["docs/**"], Path);
    assert!(ignore.matches_all(&strings(&["docs/a.md", "docs/b/c.md"])));
    assert!(!ignore.matches_all(&strings(&["docs/a.md", "src/main.rs"])));
    assert!(ignore.matches_all(&[]));
    // Negations apply per item.
    let mixed = filter(&["sub-project/**", "!sub-project/docs/**"], Path);
    assert!(!mixed.matches_any(&strings(&["sub-project/docs/readme.md"])));
    assert!(mixed.matches_any(&strings(&[
        "sub-project/docs/readme.md",
        "sub-project/a.js"
    ])));
}

#[test]
fn errors() {
    // (pattern, offset of the error)
    let cases: &[(&str, usize)] = &[
        ("", 0),
        ("!", 1),
        ("?abc", 0),
        ("+abc", 0),
        ("!?a", 1),
        ("*?", 1),
        ("**+", 2),
        ("a??", 2),
        ("a+?", 2),
        ("**/?", 3),
        ("[", 0),
        ("a[bc", 1),
        ("release/[0-9", 8),
        ("[]", 0),
        ("x[]y", 1),
        ("[a-]", 1),
        ("[a-", 1),
        ("[z-a]", 1),
        ("[a-Z]", 1),
        ("[0-z]", 1),
        ("[.]", 1),
        ("[!a]", 1),
        ("[^a]", 1),
        ("[-a]", 1),
        ("[a\\]]", 2),
        ("!v[12", 2),
    ];
    for (src, offset) in cases {
        for kind in [Ref, Path] {
            let err: PatternError = match Pattern::new(src, kind) {
                Ok(p) => panic!("{src:?} should be rejected, got {p:?}"),
                Err(e) => e,
            };
            assert_eq!(err.offset, *offset, "{src:?}: {err}");
            assert!(!err.message.is_empty());
            assert!(err.offset <= src.len());
        }
    }
    let owned = vec!["main".to_owned(), "[".to_owned(), "x".to_owned()];
    let (index, err) = Filter::new(&owned, Ref).expect_err("bad pattern");
    assert_eq!(index, 1);
    assert_eq!(err.offset, 0);
    assert_eq!(err.to_string(), err.message);
}

#[test]
fn no_exponential_backtracking() {
    let long_a = "a".repeat(20_000);
    let star_heavy = format!("{}b", "*a".repeat(40));
    assert!(
        !Pattern::new(&star_heavy, Path)
            .expect("valid")
            .matches(&long_a)
    );
    let double_star_heavy = format!("{}b", "**a".repeat(40));
    assert!(
        !Pattern::new(&double_star_heavy, Path)
            .expect("valid")
            .matches(&long_a)
    );
    // The classic (a?){n}a{n} against a{n}.
    let n = 200;
    let classic = format!("{}{}", "a?".repeat(n), "a".repeat(n));
    assert!(
        Pattern::new(&classic, Ref)
            .expect("valid")
            .matches(&"a".repeat(n))
    );
    let plus_heavy = format!("{}c", "a+".repeat(50));
    assert!(
        !Pattern::new(&plus_heavy, Ref)
            .expect("valid")
            .matches(&long_a)
    );
    let dirs = format!("{}x", "**/".repeat(50));
    assert!(
        !Pattern::new(&dirs, Path)
            .expect("valid")
            .matches(&"a/".repeat(5_000))
    );
}

#[test]
fn never_panics() {
    // Every short pattern over an alphabet of the special characters and a few plain ones,
    // matched against every short input: compiling may fail, nothing may panic.
    let alphabet = ['*', '?', '+', '[', ']', '\\', '!', '-', '/', 'a', '0', 'é'];
    let inputs = ["", "a", "/", "a/a", "0-a", "é", "!a", "[a]", "aa/0/é", "\\"];
    let mut pattern = String::new();
    let total = alphabet.len().pow(4);
    for mut n in 0..total {
        pattern.clear();
        for _ in 0..4 {
            pattern.push(alphabet[n % alphabet.len()]);
            n /= alphabet.len();
        }
        for kind in [Ref, Path] {
            match Pattern::new(&pattern, kind) {
                Ok(p) => {
                    for input in inputs {
                        let _ = p.matches(input);
                    }
                }
                Err(e) => assert!(e.offset <= pattern.len(), "{pattern:?}: {e:?}"),
            }
        }
    }
}
