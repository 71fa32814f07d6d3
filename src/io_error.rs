//! The error of a platform's I/O, kept whole: below the engine (whose `Io` trait
//! returns it) and the error layer (which records it), so neither depends on the other.

use std::fmt;
use std::rc::Rc;

/// A failure of the platform's I/O (an HTTP transport, the key-value store, a body
/// read), with the platform's own error kept: shown with its causes in words, and there
/// to inspect with [`IoError::get_ref`]. Shared, so errors that are passed on (a part's
/// failure recorded on the upload) stay cheap to clone.
#[derive(Clone)]
pub struct IoError(Rc<dyn std::error::Error + 'static>);

/// An error that is only a message (a platform that reports its failures as text).
#[derive(Debug)]
struct Message(String);

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Message {}

impl IoError {
    /// The platform's error.
    pub fn new(error: impl std::error::Error + 'static) -> IoError {
        IoError(Rc::new(error))
    }

    /// A failure the platform states only in words.
    pub fn msg(message: impl Into<String>) -> IoError {
        IoError(Rc::new(Message(message.into())))
    }

    /// The platform's error itself.
    pub fn get_ref(&self) -> &(dyn std::error::Error + 'static) {
        &*self.0
    }
}

impl fmt::Display for IoError {
    /// The error and each of its causes, `: `-separated (a transport error's cause is
    /// often the useful part: "connection refused").
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

impl fmt::Debug for IoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IoError({self})")
    }
}

/// Compared by what they say: two failures that read the same are the same to the engine.
impl PartialEq for IoError {
    fn eq(&self, other: &IoError) -> bool {
        self.to_string() == other.to_string()
    }
}

impl Eq for IoError {}

impl std::error::Error for IoError {}

impl From<String> for IoError {
    fn from(message: String) -> IoError {
        IoError::msg(message)
    }
}

impl From<&str> for IoError {
    fn from(message: &str) -> IoError {
        IoError::msg(message)
    }
}
