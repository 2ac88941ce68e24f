//! The context zip checker and extractor must never panic, hang or write outside their directory,
//! whatever bytes arrive.
#![no_main]

use kubeinvoke::context::{ContextLimits, check, extract};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = ContextLimits { max_entries: 64, max_unpacked_bytes: 1 << 20 };
    if check(data, limits).is_ok() {
        let dir = std::env::temp_dir().join(format!("kubeinvoke-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // Whatever passed the check must extract within the limits (or fail cleanly).
        let _ = extract(data, &dir, limits);
        std::fs::remove_dir_all(&dir).unwrap();
    }
});
