//! How a command ends: the exit codes documented in README.md, the
//! [`Outcome`] of a command that did its job, and the [`Failure`] of one that
//! did not. Only `main` turns them into a process exit.

/// Exit codes, as documented in README.md.
pub const OK: u8 = 0;
pub const RUNTIME: u8 = 1;
pub const USAGE: u8 = 2;
pub const INTERRUPTED: u8 = 130;

/// How a command that did not fail ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It did what was asked.
    Done,
    /// The operator stopped a run and every request in flight finished: the
    /// campaign resumes where it stopped.
    Interrupted,
    /// The operator insisted, or the grace period ran out, with requests
    /// still in flight: those become `unknown` at the next start.
    LeftAtOnce,
}

impl Outcome {
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Done => OK,
            Outcome::Interrupted | Outcome::LeftAtOnce => INTERRUPTED,
        }
    }
}

/// An error with the exit code it deserves.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

impl Failure {
    pub(crate) fn usage(error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            code: USAGE,
            error: error.into(),
        }
    }

    pub(crate) fn runtime(error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            code: RUNTIME,
            error: error.into(),
        }
    }
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure::runtime(error)
    }
}
