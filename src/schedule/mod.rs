//! When a campaign may text whom: the pure, clock-free scheduling core.
//!
//! - [`window`] parses `--window` into [`SendWindows`](window::SendWindows)
//!   (local times of weekdays) and stores it as text.
//! - [`Schedule`] turns those local times into instants in each recipient's
//!   zones: is it open now, until when, and when does it next open. A
//!   recipient whose number spans several zones is texted only while the
//!   window is open in all of them.
//! - [`deadline`] reads the instants of `--start-at` and `--not-after`.
//! - [`day_bounds`], [`parse_zone`] and [`machine_zone`] handle zones and the
//!   calendar day that `--max-per-day` counts in.
//! - [`estimate`] tells when the campaign's last send would happen.
//!
//! Nothing here reads the clock: every function takes `now`. The one
//! exception to "nothing reads the environment" is [`machine_zone`].

pub mod deadline;
pub mod estimate;
mod open;
#[cfg(test)]
pub(crate) mod testing;
pub mod window;
mod zone;

pub use open::{OpenInterval, Schedule};
pub use zone::{day_bounds, machine_zone, parse_zone, ZoneError};
