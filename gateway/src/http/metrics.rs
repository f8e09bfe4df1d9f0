//! Prometheus metrics, written in the text exposition format by hand: HTTP requests by route,
//! method and status, a latency histogram per route, open push streams, and a per-account sync
//! lag gauge the sync driver sets.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Debug, Default)]
struct Inner {
    /// (route, method, status) → count.
    requests: BTreeMap<(String, String, u16), u64>,
    latency: BTreeMap<String, Histogram>,
    /// JMAP method name → calls.
    method_calls: BTreeMap<String, u64>,
    /// account id → seconds behind upstream.
    sync_lag: BTreeMap<String, f64>,
}

/// The gateway's metrics registry.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
    push_streams: AtomicI64,
}

/// Keeps the open-push-stream gauge raised while it lives.
#[derive(Debug)]
pub struct PushStreamGuard<'a>(&'a Metrics);

impl Drop for PushStreamGuard<'_> {
    fn drop(&mut self) {
        self.0.push_streams.fetch_sub(1, Ordering::Relaxed);
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records one finished HTTP request.
    pub fn observe(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        let mut inner = self.lock();
        *inner
            .requests
            .entry((route.to_owned(), method.to_owned(), status))
            .or_default() += 1;
        let h = inner.latency.entry(route.to_owned()).or_default();
        let secs = elapsed.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    /// Records JMAP method calls by name.
    pub fn method_called(&self, name: &str) {
        *self.lock().method_calls.entry(name.to_owned()).or_default() += 1;
    }

    /// Sets how far an account's mirror is behind its upstream server (the sync driver calls it).
    pub fn set_sync_lag(&self, account_id: &str, seconds: f64) {
        self.lock().sync_lag.insert(account_id.to_owned(), seconds);
    }

    /// Counts an open EventSource or WebSocket push stream until the guard drops.
    pub fn push_stream(&self) -> PushStreamGuard<'_> {
        self.push_streams.fetch_add(1, Ordering::Relaxed);
        PushStreamGuard(self)
    }

    /// The exposition text; `subscriptions` is the number of active PushSubscription deliveries.
    pub fn render(&self, subscriptions: usize) -> String {
        let inner = self.lock();
        let mut out = String::new();
        out.push_str(
            "# HELP jmap_http_requests_total HTTP requests by route, method and status.\n",
        );
        out.push_str("# TYPE jmap_http_requests_total counter\n");
        for ((route, method, status), n) in &inner.requests {
            let _ = writeln!(
                out,
                "jmap_http_requests_total{{route=\"{}\",method=\"{}\",status=\"{status}\"}} {n}",
                escape(route),
                escape(method)
            );
        }
        out.push_str(
            "# HELP jmap_http_request_duration_seconds Time to the response head, by route.\n",
        );
        out.push_str("# TYPE jmap_http_request_duration_seconds histogram\n");
        for (route, h) in &inner.latency {
            let route = escape(route);
            for (bound, count) in BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(
                    out,
                    "jmap_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "jmap_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "jmap_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "jmap_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                h.count
            );
        }
        out.push_str("# HELP jmap_method_calls_total JMAP method calls by method name.\n");
        out.push_str("# TYPE jmap_method_calls_total counter\n");
        for (name, n) in &inner.method_calls {
            let _ = writeln!(
                out,
                "jmap_method_calls_total{{method=\"{}\"}} {n}",
                escape(name)
            );
        }
        out.push_str("# HELP jmap_push_streams Open EventSource and WebSocket push streams.\n");
        out.push_str("# TYPE jmap_push_streams gauge\n");
        let _ = writeln!(
            out,
            "jmap_push_streams {}",
            self.push_streams.load(Ordering::Relaxed)
        );
        out.push_str(
            "# HELP jmap_push_subscriptions Verified PushSubscriptions being delivered.\n",
        );
        out.push_str("# TYPE jmap_push_subscriptions gauge\n");
        let _ = writeln!(out, "jmap_push_subscriptions {subscriptions}");
        out.push_str(
            "# HELP jmap_sync_lag_seconds How far each account's mirror is behind upstream.\n",
        );
        out.push_str("# TYPE jmap_sync_lag_seconds gauge\n");
        for (account, lag) in &inner.sync_lag {
            let _ = writeln!(
                out,
                "jmap_sync_lag_seconds{{account=\"{}\"}} {lag}",
                escape(account)
            );
        }
        out
    }
}
