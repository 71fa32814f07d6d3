//! Envelopes around object events: the SNS HTTPS envelope (around S3 events), Pub/Sub
//! push (around GCS notifications) and Azure Event Grid's own schema, with their
//! subscription handshakes.

use serde_json::Value;

use super::azure::azure_blob;
use super::fields::{base64_bytes, md5_base64_to_hex, str_at, text_at, u64_at};
use super::{parse_value, ObjectEvent, Parsed, Store};

/// An SNS HTTPS message: confirm a subscription, or unwrap a notification's `Message`
/// (an S3 event notification or test event, as a JSON string).
pub(super) fn sns(v: &Value) -> Result<Parsed, String> {
    match str_at(v, &["Type"]).unwrap_or_default() {
        "SubscriptionConfirmation" => {
            let url = text_at(v, &["SubscribeURL"]).ok_or("the SNS SubscriptionConfirmation has no SubscribeURL")?;
            if !is_sns_url(&url) {
                return Err(format!("the SNS SubscribeURL {url:?} is not an https URL of an SNS endpoint (sns.*.amazonaws.com)"));
            }
            Ok(Parsed::SnsConfirm { subscribe_url: url, topic_arn: text_at(v, &["TopicArn"]).unwrap_or_default() })
        }
        "Notification" => {
            let message = str_at(v, &["Message"]).ok_or("the SNS Notification has no Message string")?;
            let inner: Value = serde_json::from_str(message)
                .map_err(|e| format!("the SNS Notification's Message is not JSON ({e}); expected an S3 event notification"))?;
            match parse_value(&inner, false)? {
                Parsed::Objects { created, ignored, .. } => Ok(Parsed::Objects { format: "sns", created, ignored }),
                other => Ok(other),
            }
        }
        // Sent when the subscription is deleted: nothing to do.
        "UnsubscribeConfirmation" => Ok(Parsed::Objects { format: "sns", created: vec![], ignored: 1 }),
        other => {
            Err(format!("an SNS message of Type {other:?}; expected SubscriptionConfirmation, Notification or UnsubscribeConfirmation"))
        }
    }
}

/// Whether `url` is `https://sns.<region>.amazonaws.com[.cn]/…`: the handler GETs it,
/// so a forged confirmation must not make it fetch anything else (an internal address,
/// another port, credentials in the authority).
fn is_sns_url(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("https://") else { return false };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default().to_ascii_lowercase();
    let region = host.strip_prefix("sns.").and_then(|h| h.strip_suffix(".amazonaws.com").or_else(|| h.strip_suffix(".amazonaws.com.cn")));
    region.is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

/// A Pub/Sub push request carrying a GCS notification: the attributes name the event
/// and object (enough with payload format `NONE`); `data`, when present, is the object
/// resource as JSON (base64), which adds the size and MD5. Object names are raw.
pub(super) fn pubsub(v: &Value) -> Result<Parsed, String> {
    let m = &v["message"];
    let attr = |k: &str| text_at(m, &["attributes", k]);
    let kind = attr("eventType").ok_or("a Pub/Sub push message without the GCS notification attributes (eventType, bucketId, objectId)")?;
    if kind != "OBJECT_FINALIZE" {
        return Ok(Parsed::Objects { format: "pubsub-gcs", created: vec![], ignored: 1 });
    }
    let data: Value = str_at(m, &["data"]).and_then(base64_bytes).and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or(Value::Null);
    let bucket = attr("bucketId").or_else(|| text_at(&data, &["bucket"])).ok_or("the GCS Pub/Sub notification has no bucketId")?;
    let key = attr("objectId").or_else(|| text_at(&data, &["name"])).ok_or("the GCS Pub/Sub notification has no objectId")?;
    let etag = text_at(&data, &["md5Hash"]).and_then(|t| md5_base64_to_hex(&t));
    let version = attr("objectGeneration")
        .or_else(|| u64_at(&data, &["generation"]).map(|g| g.to_string()))
        .or_else(|| etag.clone())
        .ok_or_else(|| format!("the GCS Pub/Sub notification has no objectGeneration for {key:?}"))?;
    let event = ObjectEvent { store: Store::Gcs, bucket, key, size: u64_at(&data, &["size"]), version, etag, url: None };
    Ok(Parsed::Objects { format: "pubsub-gcs", created: vec![event], ignored: 0 })
}

/// An Event Grid array (schema `eventType`, `subject`, `data`): blob creations, the
/// subscription validation handshake, and anything else ignored.
pub(super) fn event_grid(items: &[Value]) -> Result<Parsed, String> {
    let mut code = None;
    let mut created = Vec::new();
    let mut ignored = 0;
    for (i, e) in items.iter().enumerate() {
        match str_at(e, &["eventType"]).unwrap_or_default() {
            "Microsoft.EventGrid.SubscriptionValidationEvent" => {
                let c = text_at(e, &["data", "validationCode"])
                    .ok_or_else(|| format!("event [{i}], a SubscriptionValidationEvent, has no data.validationCode"))?;
                code = Some(c);
            }
            "Microsoft.Storage.BlobCreated" => {
                let subject = str_at(e, &["subject"]).unwrap_or_default();
                match azure_blob(subject, &e["data"]).map_err(|m| format!("event [{i}]: {m}"))? {
                    Some(o) => created.push(o),
                    None => ignored += 1,
                }
            }
            _ => ignored += 1,
        }
    }
    Ok(match code {
        Some(code) => Parsed::EventGridValidation { code, created },
        None => Parsed::Objects { format: "eventgrid", created, ignored },
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_sns_endpoints_are_confirmed() {
        for ok in ["https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription", "https://sns.cn-north-1.amazonaws.com.cn/x"] {
            assert!(super::is_sns_url(ok), "{ok}");
        }
        for bad in [
            "http://sns.us-west-2.amazonaws.com/",
            "https://sns.us-west-2.amazonaws.com.evil.net/",
            "https://evil.net/sns.us-west-2.amazonaws.com",
            "https://user@sns.us-west-2.amazonaws.com/",
            "https://sns.us-west-2.amazonaws.com:8080/",
            "https://sns..amazonaws.com/",
            "https://169.254.169.254/latest/meta-data/",
        ] {
            assert!(!super::is_sns_url(bad), "{bad}");
        }
    }
}
