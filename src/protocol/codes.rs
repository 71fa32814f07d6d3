//! The service's failure codes, named once: the uploader acts on them, the simulator
//! answers with them, and the simulation's model service uses them. The document
//! (`shared/docs/vod-upload-protocol.md`, InitUpload's "Errors") lists these six; any
//! other negative code may be a transient fault, and every failure is retryable when
//! the answer says `canRetry: 1`.

/// -10001: a common parameter (Action, Region, Timestamp, Nonce, SecretId,
/// SignatureMethod) is missing or wrong.
pub const COMMON: i64 = -10001;

/// -10002: the signature (or authentication) failed.
pub const SIGNATURE: i64 = -10002;

/// -10003: a protocol parameter of the action is refused; for UploadPart also "no
/// session" or "already finished", for FinishUpload "parts are missing".
pub const PARAMS: i64 = -10003;

/// -10004: the service failed to write its cache (transient).
pub const WRITE_CACHE: i64 = -10004;

/// -10005: the service failed to read its cache (transient).
pub const READ_CACHE: i64 = -10005;

/// -10006: the body was refused (its MD5 differs from `dataMd5`, or its length from
/// `dataSize`).
pub const INVALID_BODY: i64 = -10006;
