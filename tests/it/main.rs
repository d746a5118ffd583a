//! Integration tests: the real `bpsms` binary against the simulator on
//! loopback. One test binary, so linking stays cheap.

mod faults;
mod harness;
mod kill;
mod pipeline;
mod resume;
mod secrets;
