//! The calls' parameters, and the rules `shared/docs/vod-upload-protocol.md` (the
//! document) states for them, each a function that names the problem it finds.
//!
//! Only the document's rules live here: the simulator enforces exactly these, and the
//! API (`api::create`) adds stricter limits of its own on top. Presence (a required
//! parameter that is missing or empty) is checked where a parameter is read.

use crate::hex;
use std::fmt;

/// The part sizes the protocol allows (`dataSize` of InitUpload: "524288 or 1048576 only").
pub const PART_SIZES: [u64; 2] = [524_288, 1_048_576];

/// The largest session part size accepted from the service (code 1's `dataSize`, which
/// overrides ours). The protocol's are 512 KiB and 1 MiB; a larger one is followed up
/// to this bound, which keeps parts in flight within the platform's memory. Ours, not
/// the document's.
pub const MAX_PART_SIZE: u64 = 4 << 20;

/// Characters the document forbids in fileName.
pub const FORBIDDEN_NAME_CHARS: &[char] = &['\\', '/', ':', '*', '?', '"', '<', '>', '|'];

/// fileName's limit in bytes (the extension is not part of it).
pub const MAX_FILE_NAME_BYTES: usize = 40;

/// InitUpload's protocol parameters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InitUpload {
    /// At most 40 bytes, no extension, none of `\ / : * ? " < > |`.
    pub file_name: String,
    /// SHA-1 of the whole file, 40 lower-case hex digits.
    pub file_sha: String,
    /// The file's size in bytes.
    pub file_size: u64,
    /// The part size asked for: one of [`PART_SIZES`].
    pub data_size: u64,
    /// Usually the extension: mp4, flv, ...
    pub file_type: String,
    /// Sent as `tags.1`, `tags.2`, ...
    pub tags: Vec<String>,
    /// Category id.
    pub class_id: Option<u64>,
    /// Whether to transcode after upload.
    pub is_transcode: bool,
    /// Whether to take screenshots after upload.
    pub is_screenshot: bool,
    /// Whether to watermark.
    pub is_watermark: bool,
}

/// UploadPart's protocol parameters (the body is the part's bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadPart {
    /// The file's SHA-1, as in InitUpload.
    pub file_sha: String,
    /// Where the part starts: a multiple of the session's part size.
    pub offset: u64,
    /// This part's length.
    pub data_size: u64,
    /// MD5 of this part's bytes, 32 lower-case hex digits.
    pub data_md5: String,
}

/// FinishUpload's protocol parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishUpload {
    /// The file's SHA-1, as in InitUpload.
    pub file_sha: String,
}

/// The forbidden characters as messages list them: `\ / : * ? " < > |`.
pub fn forbidden_name_chars_listed() -> String {
    FORBIDDEN_NAME_CHARS.iter().map(char::to_string).collect::<Vec<_>>().join(" ")
}

/// Whether the document forbids `c` in fileName.
pub fn forbidden_in_file_name(c: char) -> bool {
    FORBIDDEN_NAME_CHARS.contains(&c)
}

/// What is wrong with a fileName.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileNameProblem {
    /// Over [`MAX_FILE_NAME_BYTES`] bytes ("at most 40 bytes").
    TooLong {
        /// The name's length in bytes.
        bytes: usize,
    },
    /// The first character the rule refuses.
    Forbidden(char),
}

impl fmt::Display for FileNameProblem {
    /// The simulator's wording; the API words its own.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileNameProblem::TooLong { bytes } => write!(f, "fileName is {bytes} bytes; at most {MAX_FILE_NAME_BYTES} bytes are allowed"),
            FileNameProblem::Forbidden(c) => write!(f, "fileName must not contain {c:?} (forbidden: {})", forbidden_name_chars_listed()),
        }
    }
}

/// fileName: "at most 40 bytes, without the extension; must not contain
/// \ / : * ? " < > |". The length is checked first.
pub fn file_name(name: &str) -> Result<(), FileNameProblem> {
    file_name_refusing(name, |_| false)
}

/// The document's fileName rule, with the characters `also` accepts refused as well (a
/// caller's own stricter rule): the problem names the first refused character, of
/// either kind.
pub fn file_name_refusing(name: &str, also: impl Fn(char) -> bool) -> Result<(), FileNameProblem> {
    if name.len() > MAX_FILE_NAME_BYTES {
        return Err(FileNameProblem::TooLong { bytes: name.len() });
    }
    match name.chars().find(|&c| forbidden_in_file_name(c) || also(c)) {
        Some(c) => Err(FileNameProblem::Forbidden(c)),
        None => Ok(()),
    }
}

/// A `dataSize` for InitUpload that is not one of [`PART_SIZES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotAPartSize(pub u64);

impl fmt::Display for NotAPartSize {
    /// The wording both the simulator and the API answer with.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dataSize must be {} or {}, got {}", PART_SIZES[0], PART_SIZES[1], self.0)
    }
}

/// InitUpload's dataSize: "524288 or 1048576 only".
pub fn data_size(size: u64) -> Result<(), NotAPartSize> {
    if PART_SIZES.contains(&size) {
        Ok(())
    } else {
        Err(NotAPartSize(size))
    }
}

/// A flag (isTranscode, isScreenshot, isWatermark) that is neither `0` nor `1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotAFlag;

impl fmt::Display for NotAFlag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("must be 0 or 1")
    }
}

/// A flag's value: "0 or 1, default 0" (the default is the caller's, for an absent flag).
pub fn flag(value: &str) -> Result<bool, NotAFlag> {
    match value {
        "0" => Ok(false),
        "1" => Ok(true),
        _ => Err(NotAFlag),
    }
}

/// What is wrong with a value the document types as uint or Integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UintProblem {
    /// Not ASCII digits (or none): a sign, a space, hex, a point.
    NotDigits,
    /// Digits past `u64` (the document gives no range, and no client sends more).
    TooLarge,
}

impl fmt::Display for UintProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UintProblem::NotDigits => "must be a non-negative integer",
            UintProblem::TooLarge => "is out of range",
        })
    }
}

/// A uint: digits only (no sign, no spaces, no hex), within `u64`.
pub fn uint(value: &str) -> Result<u64, UintProblem> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UintProblem::NotDigits);
    }
    value.parse().map_err(|_| UintProblem::TooLarge)
}

/// fileSha: the file's SHA-1, 40 hex digits (the document says lower case; upper case
/// is accepted because the C# SDK sent it).
pub fn is_file_sha(value: &str) -> bool {
    hex::is_hex(value, 40)
}

/// dataMd5: a part's MD5, 32 hex digits (either case, as for fileSha).
pub fn is_md5(value: &str) -> bool {
    hex::is_hex(value, 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documents_rules() {
        assert_eq!(forbidden_name_chars_listed(), r#"\ / : * ? " < > |"#);
        assert_eq!(file_name(&"é".repeat(20)), Ok(()));
        assert_eq!(file_name(&format!("{}n", "é".repeat(20))), Err(FileNameProblem::TooLong { bytes: 41 }));
        assert_eq!(file_name("a\tb|c"), Err(FileNameProblem::Forbidden('|')));
        assert_eq!(file_name_refusing("a\tb|c", char::is_control), Err(FileNameProblem::Forbidden('\t')));
        assert_eq!(data_size(1_048_576), Ok(()));
        assert_eq!(data_size(1000).unwrap_err().to_string(), "dataSize must be 524288 or 1048576, got 1000");
        assert_eq!((flag("0"), flag("1"), flag("01")), (Ok(false), Ok(true), Err(NotAFlag)));
        assert_eq!((uint("0"), uint("-1"), uint("18446744073709551616")), (Ok(0), Err(UintProblem::NotDigits), Err(UintProblem::TooLarge)));
        assert!(is_file_sha(&"A".repeat(40)) && !is_file_sha(&"a".repeat(39)));
        assert!(is_md5(&"0".repeat(32)) && !is_md5(&"g".repeat(32)));
    }
}
