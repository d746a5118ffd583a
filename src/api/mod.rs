//! Talking to the BPCC SMS/MMS API: wire types, the token cache, Send and Get
//! Message over one HTTP stack, and the classification of every answer
//! (spec §11).

pub mod client;
pub mod outcome;
mod transport;
pub mod wire;

pub use client::{ApiClient, ApiConfig};
pub use outcome::{FatalError, PollOutcome, SendOutcome};
