//! Everything a test needs in one name, as the test binaries import it (`use
//! kubeinvoke_testkit::harness::*`): the server, PostgreSQL databases, ARM fixtures, the witness.

pub use crate::fixtures::*;
pub use crate::postgres::*;
pub use crate::server::*;
pub use crate::witness::*;
