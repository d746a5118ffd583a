//! Talking to the BPCC SMS/MMS API: wire types, the token cache, Send and Get
//! Message, and the classification of every answer (spec §11).

pub mod client;
mod direct;
pub mod outcome;
pub mod wire;

pub use client::{ApiClient, ApiConfig};
pub use outcome::{FatalError, PollOutcome, SendOutcome};
