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
    /// The answer may not have come from a raftgres admin service (a
    /// transport error, an HTTP answer without gRPC status): worth asking
    /// what listens on the endpoint.
    pub probe: bool,
}

/// Where the token comes from, for messages about a missing or refused one.
pub const TOKEN_HINT: &str = "give the cluster token ([security] token of a node's configuration) with --token or RAFTCTL_TOKEN, or \
     --token-file or RAFTCTL_TOKEN_FILE";

impl Failure {
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self { exit, message: message.into(), probe: false }
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
        // tonic's words for an answer that was not gRPC at all.
        let not_grpc = s.message().contains("grpc-status header missing") || s.message().contains("content-type");
        let mut message = s.message().to_string();
        if exit == Exit::Unauthorized && !not_grpc {
            message = format!("{message}; {TOKEN_HINT}");
        }
        let probe = not_grpc || exit == Exit::Unreachable || s.code() == Code::Unimplemented;
        Failure { exit, message, probe }
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
        let refused = Failure::from(Status::unauthenticated("wrong cluster token"));
        assert!(refused.message.contains("--token") && refused.message.contains("RAFTCTL_TOKEN"), "{refused:?}");
        assert!(!refused.probe);
        let http =
            Failure::from(Status::unauthenticated("grpc-status header missing, mapped from HTTP status code 401"));
        assert!(http.probe, "{http:?}");
    }
}
