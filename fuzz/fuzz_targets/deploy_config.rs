//! Any bytes as `.pipewright/deploy.yml`: parsing and checking it must not panic, and
//! rendering its diagnostics must not either.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(src) = std::str::from_utf8(data) {
        let parsed = deploy::config::parse(src);
        for d in &parsed.diagnostics {
            let _ = workflow::render(d, "deploy.yml", src, false);
        }
    }
});
