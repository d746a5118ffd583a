//! bpsms sends one SMS/MMS campaign through the Bright Pattern Contact Center
//! SMS/MMS API and tracks every message to its final delivery status.
//!
//! # Layout
//!
//! - [`cli`] parses the command line; [`config`] layers flags, environment and
//!   the TOML file into validated settings.
//! - [`domain`] holds the validated value types (phone numbers, message text,
//!   templates) and the message lifecycle ([`domain::state`]).
//! - [`import`] streams a recipients CSV into the store as one transaction.
//! - [`store`] owns the SQLite database: the only module with SQL in it.
//! - [`api`] speaks to BPCC: wire types, token cache, Send and Get, and the
//!   classification of every answer.
//! - [`sender`] and [`tracker`] are the two worker loops; [`campaign`] runs them
//!   together for `bpsms send`.
//! - [`report`] prints summaries and writes exports; [`progress`] draws the
//!   live progress line.
//! - [`mock`] is the BPCC simulator behind `bpsms mock-server`, built only
//!   with the default `simulator` feature: the sending path cannot import it
//!   (`cargo build --no-default-features` proves it).
//! - [`commands`] holds one file per subcommand, wiring it to the modules
//!   above, and the exit codes; nothing below it imports from it.

pub mod api;
pub mod campaign;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod domain;
pub mod fuzzing;
pub mod import;
pub mod lease;
#[cfg(feature = "simulator")]
pub mod mock;
pub mod pacing;
pub mod progress;
pub mod recorder;
pub mod report;
pub mod secret;
pub mod sender;
pub mod shell;
pub mod store;
pub mod suppress;
pub mod tracker;
pub mod worker;

pub use commands::run;
