//! `host-sim hooks`: the completion-webhook receiver ([`crate::hooks`]) as a server
//! that prints one JSON line per delivery on stdout, to watch the component's webhooks
//! by hand (the README's example).

use crate::hooks::{self, HookOptions};
use std::net::SocketAddr;
use std::time::{Duration, UNIX_EPOCH};

/// `host-sim hooks`'s flags.
#[derive(clap::Args, Debug)]
pub struct HooksArgs {
    /// Port to listen on (loopback); 0 picks a free one. The URL is printed once ready.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// The webhook secret (`notify_secret`) the signatures are checked with.
    #[arg(long, env = "HOOKS_SECRET", hide_env_values = true)]
    secret: String,
    /// Share of verified deliveries answered 500.
    #[arg(long, default_value_t = 0.0)]
    fail_rate: f64,
    /// Share of verified deliveries whose answer is lost (the connection closed).
    #[arg(long, default_value_t = 0.0)]
    lose_answer_rate: f64,
    /// Seed of those faults.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Serves until killed, printing each delivery as it arrives:
/// `{"event", "deliveryId", "signatureOk", "rejected", "answered", "receivedAt", "body"}`.
pub async fn run(args: HooksArgs) -> anyhow::Result<()> {
    let options = HookOptions { fail_rate: args.fail_rate, seed: args.seed, lose_answer_rate: args.lose_answer_rate };
    let running = hooks::start_on(SocketAddr::from(([127, 0, 0, 1], args.port)), &args.secret, options).await?;
    println!("host-sim hooks listening on {}", running.addr);
    println!("notify_url: {}", running.url());
    let mut printed = 0;
    loop {
        // Polling keeps the receiver free of a printing path; 50 ms is quick enough
        // for a person watching.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let deliveries = running.deliveries();
        for d in &deliveries[printed..] {
            let line = serde_json::json!({
                "event": d.event,
                "deliveryId": d.delivery_id,
                "signatureOk": d.signature_ok,
                "rejected": d.rejected,
                "answered": d.answered,
                "receivedAt": d.received_at.duration_since(UNIX_EPOCH).map_or(0, |t| t.as_secs()),
                "body": d.body,
            });
            println!("{line}");
        }
        printed = deliveries.len();
    }
}
