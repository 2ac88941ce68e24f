//! The ARM path grammar must never panic, and whatever it accepts must have valid names.
#![no_main]

use kubeinvoke::arm::path::{Route, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else { return };
    if let Some(parsed) = parse(path) {
        if let Ok(Route::Cluster(cluster)) = parsed.route {
            assert!(!cluster.name.as_str().is_empty() && cluster.name.as_str().len() <= 63);
            assert!(cluster.group.as_str().chars().count() <= 90);
        }
    }
});
