//! `raftctl`'s documented exit codes, and the failure that carries one.

use std::process::ExitCode;

use tonic::{Code, Status};

/// What the exit code says. Whatever the code, an error leaves the
/// cluster unchanged unless the message says otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Done.
    Ok = 0,
    /// Refused by the cluster: unknown member, not allowed now, stale
    /// version.
    Refused = 1,
    /// Bad arguments or an invalid value.
    Usage = 2,
    /// The cluster could not be reached or did not answer.
    Unreachable = 3,
    /// The token was refused.
    Unauthorized = 4,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e as u8)
    }
}

/// A failure with its exit code.
#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
}

impl Failure {
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self { exit, message: message.into() }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(Exit::Usage, message)
    }
}

impl From<Status> for Failure {
    fn from(s: Status) -> Self {
        let exit = match s.code() {
            Code::InvalidArgument => Exit::Usage,
            Code::NotFound | Code::FailedPrecondition | Code::AlreadyExists | Code::Aborted => Exit::Refused,
            Code::Unauthenticated | Code::PermissionDenied => Exit::Unauthorized,
            _ => Exit::Unreachable,
        };
        Failure::new(exit, s.message().to_string())
    }
}

impl From<std::io::Error> for Failure {
    /// Writing the output failed. A reader that went away (`raftctl
    /// history | head`) is not an error: it ends the command with `Ok`.
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            return Failure::new(Exit::Ok, "");
        }
        Failure::usage(format!("write the output: {e}"))
    }
}

pub type Result<T> = std::result::Result<T, Failure>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_map_to_the_documented_exits() {
        for (code, exit) in [
            (Code::InvalidArgument, Exit::Usage),
            (Code::NotFound, Exit::Refused),
            (Code::FailedPrecondition, Exit::Refused),
            (Code::Aborted, Exit::Refused),
            (Code::Unauthenticated, Exit::Unauthorized),
            (Code::Unavailable, Exit::Unreachable),
            (Code::DeadlineExceeded, Exit::Unreachable),
        ] {
            assert_eq!(Failure::from(Status::new(code, "x")).exit, exit, "{code:?}");
        }
        assert_eq!(Exit::Unauthorized as u8, 4);
    }
}
