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
//! - [`mock`] is the BPCC simulator behind `bpsms mock-server`; the sending
//!   path never imports it.
//! - [`app`] wires subcommands to the modules above.

pub mod api;
pub mod app;
pub mod campaign;
pub mod check;
pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod domain;
pub mod fuzzing;
pub mod import;
pub mod lease;
pub mod mock;
pub mod pacing;
pub mod progress;
pub mod recorder;
pub mod report;
pub mod secret;
pub mod sender;
pub mod store;
pub mod suppress;
pub mod tracker;
pub mod worker;

pub use app::run;
