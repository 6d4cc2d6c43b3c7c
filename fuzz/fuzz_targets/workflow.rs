//! Any bytes as a workflow file: parsing, validating and rendering diagnostics must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(src) = std::str::from_utf8(data) {
        let parsed = workflow::parse(src);
        for d in &parsed.diagnostics {
            let _ = workflow::render(d, "fuzz.yml", src, false);
        }
    }
});
