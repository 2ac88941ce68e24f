//! The ARM surface: path grammar, api-version policy, names, wire types and errors.
//!
//! Everything a client can observe about the protocol is defined here, so handlers never
//! assemble JSON or error texts themselves.

pub mod api_version;
pub mod error;
pub mod fanout;
pub mod path;
pub mod refusal;
pub mod wire;

pub use error::ApiError;
