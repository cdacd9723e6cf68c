//! The body pipeline on arbitrary bytes: decompress (gzip or not), check, split. It must never
//! panic, never exceed the limit, and every message it accepts must be a JSON object.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tap_webhook::payload::top_level;
use tap_webhook::receiver::body::{decode, split, Bounds};

const LIMIT: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let (flag, raw) = data.split_first().unwrap_or((&0, data));
    let encoding = if flag & 1 == 1 { Some("gzip") } else { None };
    let Ok(body) = decode(raw, encoding, LIMIT) else {
        return;
    };
    assert!(body.len() <= LIMIT);
    if let Ok(messages) = split(&body, &Bounds::default()) {
        for m in messages {
            assert!(m.trim_start().starts_with('{'));
            // What the tap does with a stored message must hold for anything accepted.
            assert!(
                top_level(m).is_ok(),
                "accepted message is not an object: {m}"
            );
        }
    }
});
