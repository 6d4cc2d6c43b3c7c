//! Any bytes as each message of the runner protocol (what a server reads from a runner,
//! and a runner from a server): decoding must not panic; what decodes encodes again; the
//! names and lines in it pass through the checks and the neutralising they get.
#![no_main]

use libfuzzer_sys::fuzz_target;
use runner::protocol::{
    BlobQuery, CacheLookup, CacheSave, Finish, HeartbeatReply, Lease, LogBatch, Manifest, Next,
    Register,
};

fn again<T: serde::Serialize + serde::de::DeserializeOwned>(data: &[u8]) -> Option<T> {
    let v: T = serde_json::from_slice(data).ok()?;
    let text = serde_json::to_vec(&v).expect("what decoded encodes");
    let _: T = serde_json::from_slice(&text).expect("what encoded decodes");
    Some(v)
}

fuzz_target!(|data: &[u8]| {
    if let Some(r) = again::<Register>(data) {
        for l in &r.labels {
            let _ = engine::mask::neutralise(l);
        }
    }
    let _ = again::<Next>(data);
    let _ = again::<Lease>(data);
    let _ = again::<HeartbeatReply>(data);
    if let Some(b) = again::<LogBatch>(data) {
        for l in &b.lines {
            let shown = engine::mask::neutralise(&l.text);
            assert!(!shown.contains(['\n', '\r', '\u{7}']));
        }
    }
    let _ = again::<Finish>(data);
    if let Some(m) = again::<Manifest>(data) {
        for f in &m.files {
            let _ = engine::artifact_name_error(&f.path);
        }
    }
    let _ = again::<BlobQuery>(data);
    let _ = again::<CacheLookup>(data);
    let _ = again::<CacheSave>(data);
});
