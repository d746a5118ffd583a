//! Talking to the BPCC SMS/MMS API: wire types, the token cache, Send and Get
//! Message, and the classification of every answer (spec §11).

pub mod client;
mod direct;
pub mod outcome;
pub mod wire;

pub use client::{ApiClient, ApiConfig};
pub use outcome::{FatalError, PollOutcome, SendOutcome};

/// `kind`, then the error's causes, each after a colon: a transport error in
/// words.
fn with_causes(kind: String, error: &dyn std::error::Error) -> String {
    let mut text = kind;
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
