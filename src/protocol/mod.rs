//! The VOD server-upload protocol (legacy v2) as plain data: signed requests out,
//! parsed answers in. No I/O happens here; the caller supplies the clock and the nonce,
//! sends the request however it likes and hands back the answer's bytes.
//!
//! - [`codes`]: the service's failure codes.
//! - [`params`]: the calls' parameters and the document's rules for them.
//! - [`request`]: credentials, endpoint, calls and their signing.
//! - [`answer`]: the service's answers, parsed.

pub mod answer;
pub mod codes;
pub mod params;
pub mod request;

pub use answer::{parse_finish, parse_init, parse_part, AnswerError, ApiError, Finished, InitAnswer, ListedPart};
pub use params::{FinishUpload, InitUpload, UploadPart, FORBIDDEN_NAME_CHARS, MAX_FILE_NAME_BYTES, MAX_PART_SIZE, PART_SIZES};
pub use request::{Call, Credentials, Endpoint, InvalidEndpoint, SignedRequest, Signer};

/// The service's failure codes the uploader acts on, under their former path (the
/// engine's modules use it); [`codes`] names all six.
pub mod vod_codes {
    pub use super::codes::{INVALID_BODY, PARAMS};
}

/// The documented endpoint of the service.
pub const DEFAULT_ENDPOINT: &str = "https://vod2.qcloud.com/v2/index.php";

/// HTTP method of a call. InitUpload and FinishUpload are documented as GET;
/// UploadPart is always POST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET, the parameters in the query: how InitUpload and FinishUpload are documented.
    Get,
    /// POST, the parameters still in the query and the part's bytes as the body: UploadPart.
    Post,
}

impl Method {
    /// The method's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}
