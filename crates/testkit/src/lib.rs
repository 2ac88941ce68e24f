//! What every kubeinvoke test binary and the benchmark share, so none keeps its own copy: real
//! server processes ([`launch`], and the tests' panicking [`harness::Server`] on top), an HTTPS
//! client trusting their CA, ARM fixtures, PostgreSQL databases (one per server, or a private
//! server), test hosts in network namespaces, the outside witness, the chart as `helm` renders it, and the rule for suites whose
//! prerequisites are missing ([`prerequisites`]).

pub mod chart;
pub mod fixtures;
pub mod harness;
pub mod launch;
pub mod network;
pub mod ports;
pub mod postgres;
pub mod prerequisites;
pub mod private_postgres;
pub mod server;
pub mod small_disk;
pub mod witness;
