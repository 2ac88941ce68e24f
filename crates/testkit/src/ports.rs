//! Ports a test hands to another process (or expects to stay closed).
//!
//! A port the kernel hands out for `bind(0)` is one of its ephemeral ports: between our closing it
//! and the other process binding it, any outgoing connection or test server on the machine may be
//! given it again (a CI run lost its dev cluster's API server that way). Ports below the ephemeral
//! range are never handed out by the kernel, so only a deliberate bind can take them.

use std::net::TcpListener;

/// Where the search starts: above the well-known and most registered service ports.
const LOWEST: u16 = 10_000;

/// A port on 127.0.0.1 that is free now and lies below the kernel's ephemeral range.
pub fn free_port() -> u16 {
    let below = ephemeral_range_start();
    let span = u32::from(below.saturating_sub(LOWEST)).max(1);
    let start = uuid::Uuid::new_v4().as_u128() as u32 % span;
    (0..span)
        .map(|step| LOWEST + ((start + step) % span) as u16)
        .find(|port| TcpListener::bind(("127.0.0.1", *port)).is_ok())
        .expect("no free port below the ephemeral range")
}

fn ephemeral_range_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .filter(|start| *start > LOWEST)
        .unwrap_or(32_768)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_free_port_is_below_the_ephemeral_range_and_bindable() {
        let port = free_port();
        assert!((LOWEST..ephemeral_range_start()).contains(&port), "{port}");
        TcpListener::bind(("127.0.0.1", port)).expect("still free");
    }
}
