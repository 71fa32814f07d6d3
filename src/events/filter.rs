//! Which created objects become uploads: a key prefix, key suffixes and a minimum size,
//! set as component variables. Buckets hold more than videos (thumbnails, manifests,
//! sidecar files), and a notification rule's own filter is often coarser.

use super::ObjectEvent;

/// The default suffixes: common video and audio file extensions.
pub const DEFAULT_SUFFIXES: &[&str] = &[
    "mp4", "mov", "mkv", "avi", "wmv", "flv", "webm", "m4v", "ts", "mts", "m2ts", "mpg", "mpeg", "3gp", "mxf", "mp3", "m4a", "aac", "wav",
    "flac", "ogg", "opus",
];

/// The filters an [`ObjectEvent`] must pass to become an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filters {
    /// Keys must start with this (case-sensitive, as keys are); empty admits all.
    pub prefix: String,
    /// Keys must end with one of these, compared in lower case; empty admits all. A
    /// bare extension is kept with its dot (`mp4` is `.mp4`), so `mp4` does not admit
    /// `clipmp4`.
    pub suffixes: Vec<String>,
    /// Objects smaller than this many bytes are skipped; events without a size pass
    /// (the upload learns the size when it reads the object).
    pub min_size: u64,
}

impl Default for Filters {
    fn default() -> Filters {
        Filters { prefix: String::new(), suffixes: DEFAULT_SUFFIXES.iter().map(|s| normalize(s)).collect(), min_size: 0 }
    }
}

impl Filters {
    /// Filters from the component's variables, each optional; an absent or blank one
    /// keeps its default. `suffixes` is a list separated by commas or spaces (`mp4,
    /// .mov`), or `*` for any key; `min_size` is a whole number of bytes.
    pub fn from_variables(prefix: Option<&str>, suffixes: Option<&str>, min_size: Option<&str>) -> Result<Filters, String> {
        let mut f = Filters::default();
        if let Some(p) = prefix {
            f.prefix = p.to_owned();
        }
        if let Some(s) = suffixes.map(str::trim).filter(|s| !s.is_empty()) {
            f.suffixes = if s == "*" {
                Vec::new()
            } else {
                s.split(|c: char| c == ',' || c.is_whitespace()).filter(|s| !s.is_empty()).map(normalize).collect()
            };
        }
        if let Some(m) = min_size.map(str::trim).filter(|m| !m.is_empty()) {
            f.min_size = m.parse().map_err(|_| format!("the minimum size {m:?} is not a whole number of bytes"))?;
        }
        Ok(f)
    }

    /// Whether the object passes every filter.
    pub fn admits(&self, e: &ObjectEvent) -> bool {
        let key = e.key.to_lowercase();
        e.key.starts_with(&self.prefix)
            && (self.suffixes.is_empty() || self.suffixes.iter().any(|s| key.ends_with(s.as_str())))
            && e.size.is_none_or(|s| s >= self.min_size)
    }
}

/// Lower case, and a dot before a bare extension.
fn normalize(suffix: &str) -> String {
    let s = suffix.trim().to_lowercase();
    if s.contains('.') {
        s
    } else {
        format!(".{s}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Store;

    fn obj(key: &str, size: Option<u64>) -> ObjectEvent {
        ObjectEvent { store: Store::S3, bucket: "b".into(), key: key.into(), size, version: "v".into(), etag: None, url: None }
    }

    #[test]
    fn default_admits_video_and_audio_in_any_case() {
        let f = Filters::default();
        for k in ["a.mp4", "dir/B.MOV", "x.M2TS", "song.opus", "a.b.webm"] {
            assert!(f.admits(&obj(k, Some(1))), "{k}");
        }
        for k in ["thumb.jpg", "clipmp4", "a.mp4.part", "manifest.m3u8", ""] {
            assert!(!f.admits(&obj(k, Some(1))), "{k}");
        }
        assert_eq!(f.suffixes.len(), 22);
    }

    #[test]
    fn variables_set_prefix_suffixes_and_size() {
        let f = Filters::from_variables(Some("in/"), Some(" mp4, .MOV _final.mxf"), Some("1000")).unwrap();
        assert_eq!(f.suffixes, [".mp4", ".mov", "_final.mxf"]);
        assert!(f.admits(&obj("in/a.MP4", Some(1000))));
        assert!(f.admits(&obj("in/a.mov", None)), "no size in the event: admitted");
        assert!(f.admits(&obj("in/x_final.mxf", Some(5000))));
        assert!(!f.admits(&obj("in/a.mp4", Some(999))));
        assert!(!f.admits(&obj("out/a.mp4", Some(5000))));
        assert!(!f.admits(&obj("in/a.mxf", Some(5000))));
    }

    #[test]
    fn blank_variables_keep_defaults_and_star_admits_any_key() {
        assert_eq!(Filters::from_variables(None, Some("  "), Some("")).unwrap(), Filters::default());
        let any = Filters::from_variables(None, Some("*"), None).unwrap();
        assert!(any.admits(&obj("readme", Some(0))));
    }

    #[test]
    fn a_bad_size_names_the_problem() {
        let e = Filters::from_variables(None, None, Some("10MB")).unwrap_err();
        assert!(e.contains("\"10MB\"") && e.contains("minimum size"), "{e}");
        assert!(Filters::from_variables(None, None, Some("-1")).is_err());
    }
}
