//! The server's long-running services, above the store and the dispatcher they drive and below
//! the HTTP layer that starts them: the activity logger (command events from the command rows)
//! and the fan-out run driver. The types they work on stay in `activity/` and `fanout/`.

pub(crate) mod activity_logger;
pub(crate) mod run_driver;
