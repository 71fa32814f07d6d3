//! How the command ends: one exit code per kind of outcome, so that a script (a cron
//! job, a CI step) knows whether to run it again, fix its input or call someone.
//! Codes from BSD's `sysexits.h` where one fits.

use crate::error::codes;

/// The command's outcome, as its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done.
    Ok,
    /// The upload failed for good, or was cancelled.
    Failed,
    /// The source changed while it was being uploaded.
    SourceChanged,
    /// A bad command line.
    Usage,
    /// A source or parameter the uploader or the service refuses.
    Refused,
    /// The source cannot be found or read.
    NoInput,
    /// The checkpoint directory cannot be used.
    Storage,
    /// Retryable trouble: the same command run again resumes.
    TryAgain,
    /// Missing or wrong configuration.
    Config,
}

impl Exit {
    /// The process's exit code.
    pub fn code(self) -> i32 {
        match self {
            Exit::Ok => 0,
            Exit::Failed => 1,
            Exit::SourceChanged => 3,
            Exit::Usage => 64,
            Exit::Refused => 65,
            Exit::NoInput => 66,
            Exit::Storage => 74,
            Exit::TryAgain => 75,
            Exit::Config => 78,
        }
    }

    /// The exit for an error with this stable code (the engine's and the API's), and
    /// whether it is retryable where the code alone does not say.
    pub fn of_code(code: &str, retryable: bool) -> Exit {
        match code {
            codes::CONFIG => Exit::Config,
            codes::SOURCE_CHANGED => Exit::SourceChanged,
            codes::SOURCE_NOT_FOUND | codes::SOURCE_DENIED => Exit::NoInput,
            codes::BAD_REQUEST
            | codes::INVALID_SOURCE
            | codes::SOURCE_NOT_ALLOWED
            | codes::SOURCE_REFUSED
            | codes::SOURCE_NO_RANGE
            | codes::SOURCE_BAD_RANGE
            | codes::SOURCE_ENCODED
            | codes::VOD_REJECTED
            | codes::PAYLOAD_TOO_LARGE => Exit::Refused,
            codes::STORAGE | codes::CHECKPOINT => Exit::Storage,
            codes::CANCELLED => Exit::Failed,
            codes::SOURCE_UNREACHABLE
            | codes::SOURCE_STALLED
            | codes::VOD_UNAVAILABLE
            | codes::UPSTREAM
            | codes::QUOTA
            | codes::CONFLICT => Exit::TryAgain,
            _ if retryable => Exit::TryAgain,
            _ => Exit::Failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_has_its_own_code() {
        let all = [
            Exit::Ok,
            Exit::Failed,
            Exit::SourceChanged,
            Exit::Usage,
            Exit::Refused,
            Exit::NoInput,
            Exit::Storage,
            Exit::TryAgain,
            Exit::Config,
        ];
        let mut codes: Vec<i32> = all.iter().map(|e| e.code()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
        // The help text lists each one.
        for code in codes {
            assert!(crate::cli::HELP.contains(&format!("\n  {code:<3} ")), "code {code} is not in the help text");
        }
    }

    #[test]
    fn codes_map_to_what_the_user_does_next() {
        assert_eq!(Exit::of_code(codes::VOD_UNAVAILABLE, true), Exit::TryAgain);
        assert_eq!(Exit::of_code(codes::VOD_REJECTED, false), Exit::Refused);
        assert_eq!(Exit::of_code(codes::SOURCE_CHANGED, false), Exit::SourceChanged);
        assert_eq!(Exit::of_code(codes::SOURCE_NOT_FOUND, false), Exit::NoInput);
        assert_eq!(Exit::of_code(codes::CHECKPOINT, false), Exit::Storage);
        assert_eq!(Exit::of_code("something_new", true), Exit::TryAgain);
        assert_eq!(Exit::of_code("something_new", false), Exit::Failed);
    }
}
