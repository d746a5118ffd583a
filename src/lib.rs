//! bpsms sends one SMS/MMS campaign through the Bright Pattern Contact Center
//! SMS/MMS API and tracks every message to its final delivery status.
//!
//! # Layout
//!
//! - [`cli`] parses the command line into raw values; [`config`] layers flags,
//!   environment and the TOML file and validates them once into typed
//!   settings.
//! - [`commands`] holds one file per subcommand (`send` and `resume`,
//!   `import`, `check`, `retry`, `status`, `export`, `mock-server`, `demo`),
//!   the dispatch, and the exit codes ([`commands::exit`]): a run returns its
//!   outcome and `main` picks the code. Nothing below it imports from it;
//!   [`shell`] quotes the commands it suggests to the operator.
//! - [`domain`] holds the validated value types: ids ([`domain::ids`]), phone
//!   numbers ([`domain::phone`], Google's libphonenumber through
//!   `rlibphonenumber`), message text, templates, and the message lifecycle
//!   ([`domain::state`]).
//! - [`import`] streams a recipients CSV into the store as one transaction;
//!   [`suppress`] reads the suppression list; [`fuzzing`] is the fuzz
//!   target's entry point.
//! - [`store`] owns the SQLite database, one concern per file: the only module
//!   with SQL in it.
//! - [`api`] speaks to BPCC over one HTTP client (reqwest): wire types, token
//!   cache, Send and Get, and the classification of every answer.
//! - [`worker`] is the one harness both workers run in; [`sender`] and
//!   [`tracker`] are its two step functions; [`recorder`] writes their answers
//!   and makes their claims in one transaction (group commit); [`pacing`]
//!   holds the schedule, the rate ceiling, AIMD, back-off and the circuit
//!   breaker; [`schedule`] is the calendar (send windows in each zone,
//!   deadlines, days, the finish estimate), [`gate`] says what may be sent
//!   now, [`pool`] picks the `--from` number of each recipient;
//!   [`campaign`] runs one `bpsms send`; [`lease`] keeps it to one runner
//!   per campaign.
//! - [`report`] prints summaries and writes exports; [`progress`] draws the
//!   live status line on a terminal; [`secret`] keeps secrets out of output;
//!   [`clock`] reads the time at the edges.
//! - `mock` is the BPCC simulator behind `bpsms mock-server` and `bpsms demo`,
//!   built only with the default `simulator` feature: the sending path cannot
//!   import it (`cargo build --no-default-features` proves it).

pub mod api;
pub mod campaign;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod domain;
pub mod fuzzing;
pub mod gate;
pub mod import;
pub mod lease;
#[cfg(feature = "simulator")]
pub mod mock;
mod output;
pub mod pacing;
pub mod pool;
pub mod progress;
pub mod recorder;
pub mod report;
pub mod schedule;
pub mod secret;
pub mod sender;
pub mod shell;
pub mod store;
pub mod suppress;
pub mod tracker;
pub mod worker;

pub use commands::run;
