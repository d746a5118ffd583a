//! Integration tests: the real `bpsms` binary against the simulator on
//! loopback. One test binary, so linking stays cheap.

mod bad_input;
mod check;
mod command_errors;
mod durability;
mod errors;
mod faults;
mod fuzz_replay;
mod harness;
mod kill;
mod pipeline;
mod resume;
mod schedule;
mod secrets;
mod stop;
