//! The ARM surface: path grammar, api-version policy, names, wire types and errors.
//!
//! Everything a client can observe about the protocol is defined here, so handlers never
//! assemble JSON or error texts themselves.

pub(crate) mod api_version;
pub(crate) mod approvals;
pub(crate) mod error;
pub(crate) mod fanout;
pub(crate) mod path;
pub(crate) mod refusal;
pub(crate) mod wire;

pub(crate) use error::ApiError;
