//! Upload-complete event notification: the documented `NewFileUpload` JSON, POSTed to
//! the application's backend with a 5 s timeout and up to 2 retries; the answer's
//! content is ignored.

use super::store::FileRecord;
use crate::http;
use serde_json::json;
use std::time::Duration;

/// Timeout of one notification attempt.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// Retries after the first attempt.
pub const RETRIES: u32 = 2;

/// Pause before the first retry (doubled before the second).
pub const RETRY_DELAY: Duration = Duration::from_millis(200);

/// Sends events to one URL.
pub struct Notifier {
    url: String,
    client: http::HttpClient,
}

/// The event body for a finished file.
pub fn event(file: &FileRecord) -> serde_json::Value {
    json!({
        "version": "4.0",
        "eventType": "NewFileUpload",
        "data": {
            "fileId": file.file_id,
            "fileName": file.file_name,
            "fileUrl": file.url,
            "coverUrl": "",
            "sourceType": "ServerUpload",
            "sourceContext": "",
            "author": "",
            "procedureTaskId": "",
            "transcodeTaskId": "",
            "fileSize": file.file_size,
        }
    })
}

impl Notifier {
    /// Events go to `url` (http only: the simulator is local).
    pub fn new(url: String) -> Self {
        Notifier { url, client: http::client() }
    }

    /// Sends the event in the background, so FinishUpload never waits for it.
    pub fn upload_complete(&self, file: &FileRecord) {
        let body = serde_json::to_vec(&event(file)).expect("JSON serializes");
        let (url, client, file_id) = (self.url.clone(), self.client.clone(), file.file_id.clone());
        tokio::spawn(async move {
            for attempt in 0..=RETRIES {
                if attempt > 0 {
                    tokio::time::sleep(RETRY_DELAY * attempt).await;
                }
                let request = hyper::Request::post(&url).header("content-type", "application/json").body(http::full(body.clone()));
                let request = match request {
                    Ok(r) => r,
                    Err(e) => return tracing::warn!(error = %e, "notify URL is not usable"),
                };
                match tokio::time::timeout(TIMEOUT, client.request(request)).await {
                    Ok(Ok(resp)) if resp.status().is_success() => {
                        return tracing::info!(file_id, attempt, "upload-complete event delivered");
                    }
                    Ok(Ok(resp)) => tracing::warn!(file_id, attempt, status = %resp.status(), "notify answered with an error"),
                    Ok(Err(e)) => tracing::warn!(file_id, attempt, error = %e, "notify failed"),
                    Err(_) => tracing::warn!(file_id, attempt, "notify timed out"),
                }
            }
        });
    }
}
