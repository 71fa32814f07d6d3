//! Uploads created from a storage event. The event names an object version (store,
//! bucket, key, and its version or ETag), but not everything an upload needs to know
//! of its source: the event is recorded at once (senders time out and retry), and the
//! first invocation that works on it probes the source and confirms it is still the
//! version the event announced.

use super::{Spec, Upload};
use crate::source::Identity;
use serde::{Deserialize, Serialize};

/// The object version an event announced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventOrigin {
    /// The store's kind (`s3`, `minio`, `gcs`, `azure`, `cos`, `seaweed`).
    pub store: String,
    /// Bucket (Azure: container).
    pub bucket: String,
    /// Object key.
    pub key: String,
    /// The version's identity (version id, ETag, generation, ...).
    pub version: String,
    /// The ETag the event gave, unquoted, to compare with what the store now answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// Whether the source was probed and found to be this version: until then the
    /// upload's identity is the event's word (its size), not the store's.
    #[serde(default)]
    pub confirmed: bool,
}

impl Upload {
    /// A pending upload of the object version an event announced, with id `id` (from
    /// the version, see [`crate::events::upload_id`]) and the event's size as a
    /// provisional identity (at least 1: a record never holds size 0).
    pub fn from_event(id: String, spec: Spec, origin: EventOrigin, size: Option<u64>, now: u64) -> Upload {
        let identity =
            Identity { size: size.unwrap_or(1).max(1), etag: origin.etag.as_ref().map(|e| format!("\"{e}\"")), last_modified: None };
        let mut up = Upload::new(spec, identity, now);
        up.id = id;
        up.origin = Some(origin);
        up
    }

    /// Whether the source must be probed before the upload starts: created from an
    /// event, not yet confirmed.
    pub fn needs_probe(&self) -> bool {
        self.origin.as_ref().is_some_and(|o| !o.confirmed)
    }

    /// The source's identity, as a probe found it: taken as the upload's, unless the
    /// event named another version of the object (an ETag that differs: the object was
    /// overwritten since), which is `Err` with what differs.
    pub fn probed(&mut self, identity: Identity) -> Result<(), String> {
        if let Some(origin) = &mut self.origin {
            let unquote = |e: &str| e.trim().trim_start_matches("W/").trim_matches('"').to_ascii_lowercase();
            if let (Some(announced), Some(found)) = (&origin.etag, &identity.etag) {
                if unquote(announced) != unquote(found) {
                    return Err(format!(
                        "the object {} was overwritten after the event: the event announced ETag {}, the store now has {}",
                        origin.key,
                        unquote(announced),
                        unquote(found)
                    ));
                }
            }
            origin.confirmed = true;
        }
        self.identity = identity;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Source;

    fn origin(etag: Option<&str>) -> EventOrigin {
        EventOrigin {
            store: "s3".into(),
            bucket: "b".into(),
            key: "in/clip.mp4".into(),
            version: "v1".into(),
            etag: etag.map(str::to_owned),
            confirmed: false,
        }
    }

    fn spec() -> Spec {
        Spec::for_source(Source::Url("http://store/b/in/clip.mp4".into()), 1 << 20)
    }

    #[test]
    fn an_event_upload_probes_first_and_checks_the_version() {
        let mut up = Upload::from_event("0123456789abcdef0123".into(), spec(), origin(Some("abc")), None, 5);
        assert_eq!((up.id.as_str(), up.identity.size, up.needs_probe()), ("0123456789abcdef0123", 1, true));
        let found = Identity { size: 300, etag: Some("\"ABC\"".into()), last_modified: None };
        up.probed(found.clone()).unwrap();
        assert!(!up.needs_probe() && up.identity == found);
        let mut other = Upload::from_event("0123456789abcdef0123".into(), spec(), origin(Some("abc")), Some(300), 5);
        let e = other.probed(Identity { size: 300, etag: Some("\"def\"".into()), last_modified: None }).unwrap_err();
        assert!(e.contains("overwritten") && e.contains("abc") && e.contains("def"), "{e}");
        assert!(other.needs_probe(), "a refused probe confirms nothing");
        // No ETag on either side: the probe's identity is taken as it is.
        let mut bare = Upload::from_event("0123456789abcdef0123".into(), spec(), origin(None), Some(0), 5);
        assert_eq!(bare.identity.size, 1);
        bare.probed(Identity { size: 7, etag: Some("\"x\"".into()), last_modified: None }).unwrap();
        assert_eq!(bare.identity.size, 7);
    }

    #[test]
    fn a_plain_upload_never_needs_a_probe_and_stores_no_origin() {
        let up = Upload::new(spec(), Identity { size: 3, etag: None, last_modified: None }, 1);
        assert!(!up.needs_probe());
        assert!(!String::from_utf8(up.encode()).unwrap().contains("origin"));
        let ev = Upload::from_event("0123456789abcdef0123".into(), spec(), origin(Some("e")), Some(9), 1);
        assert_eq!(Upload::decode(&ev.encode()).unwrap(), ev);
    }
}
