//! Validated value types and the message lifecycle. Everything below the
//! edges of the program (CSV, CLI, API JSON, database rows) works with these.

pub mod ids;
pub mod phone;
pub mod state;
pub mod template;
pub mod text;
