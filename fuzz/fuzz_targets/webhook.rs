//! Any bytes as the body of an authentic webhook delivery of any forge and event: reading
//! it must not panic, and a delivery that asks for a run names commit ids only (they go to
//! git).
#![no_main]

use libfuzzer_sys::fuzz_target;

const FORGES: &[(&str, &[&str])] = &[
    ("github", &["push", "pull_request", "ping"]),
    ("gitea", &["push", "pull_request"]),
    ("gitlab", &["Push Hook", "Tag Push Hook", "Merge Request Hook"]),
];

fuzz_target!(|data: &[u8]| {
    for (forge, kinds) in FORGES {
        for kind in *kinds {
            if let Some(event) = server::read_webhook(forge, kind, data) {
                assert!(server::git::is_commit_id(&event.sha), "{}", event.sha);
                if let Some(before) = &event.before {
                    assert!(
                        server::git::is_commit_id(before) || before.chars().all(|c| c == '0'),
                        "{before}"
                    );
                }
            }
        }
    }
});
