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
    /// often the useful part: "connection refused"), with any URL's query redacted: a
    /// platform's words are not ours, some quote the URL they failed on, and a presigned
    /// URL's query is a credential. Every message built from an I/O error (an upload's
    /// error, a log line, the command's output) goes through here.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = self.0.to_string();
        let mut cause = self.0.source();
        while let Some(c) = cause {
            text.push_str(": ");
            text.push_str(&c.to_string());
            cause = c.source();
        }
        f.write_str(&redact_queries(&text))
    }
}

/// `text` with the query of every URL in it (from `?` to the next whitespace) replaced by
/// `<redacted>`. Only whitespace ends it: a quote or bracket may be in a query, and
/// eating a closing one is better than showing what follows it.
pub fn redact_queries(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let end = rest[at..].find(char::is_whitespace).map_or(rest.len(), |e| at + e);
        match rest[at..end].find('?') {
            Some(q) => {
                out.push_str(&rest[..at + q]);
                out.push_str("?<redacted>");
            }
            None => out.push_str(&rest[..end]),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn url_queries_in_platform_words_are_redacted() {
        let e = IoError::msg("error sending request for url (https://b.s3.amazonaws.com/k.mp4?X-Amz-Signature=abc&X-Amz-Credential=AKIA)");
        assert_eq!(e.to_string(), "error sending request for url (https://b.s3.amazonaws.com/k.mp4?<redacted>");
        assert_eq!(
            redact_queries("GET 'http://a/x?s=1' then http://b/y?t=2 failed"),
            "GET 'http://a/x?<redacted> then http://b/y?<redacted> failed"
        );
        // A quote in a query hides nothing after it.
        assert_eq!(redact_queries("(https://h/p?a=1'sig=S\"x>y) end"), "(https://h/p?<redacted> end");
        for plain in ["connection refused", "http://a/x failed", "bad ? mark", "://?"] {
            assert_eq!(redact_queries(plain), plain.replace("://?", "://?<redacted>"));
        }
    }

    proptest! {
        /// No character of a URL's query survives, whatever is around it.
        #[test]
        fn no_query_survives(before in "[ -~]{0,20}", query in "[!-~]{1,30}", after in "( [ -~]{0,20})?") {
            let text = format!("{before}https://h.example/p?QQ{query}{after}");
            let shown = IoError::msg(text.as_str()).to_string();
            prop_assert!(!shown.contains(&format!("QQ{query}")), "{shown}");
        }
    }
}
