//! Logging through `tracing`.

/// Installs the log subscriber: `WAPI_LOG` sets the filter (default `info`),
/// `WAPI_LOG_FORMAT=json` switches to JSON lines.
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WAPI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = std::env::var("WAPI_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Starts reporting to Sentry when a DSN is set; keep the guard for the
/// life of the process (it sends what is left when dropped). Panics are
/// reported by the panic integration; [`report`] sends the rest.
pub fn init_sentry(dsn: Option<&str>) -> Option<sentry::ClientInitGuard> {
    let dsn = dsn?;
    let guard = sentry::init((
        dsn,
        sentry::ClientOptions {
            release: sentry::release_name!(),
            // No IP addresses, no request bodies: message text and keys
            // never leave the bridge.
            send_default_pii: false,
            ..Default::default()
        },
    ));
    guard.is_enabled().then_some(guard)
}

/// Reports an error an operator must act on, tagged with the session. The
/// message names what happened, never message text or credentials. A no-op
/// without Sentry.
pub fn report(session: Option<&str>, message: &str) {
    sentry::with_scope(
        |scope| {
            if let Some(s) = session {
                scope.set_tag("session", s);
            }
        },
        || sentry::capture_message(message, sentry::Level::Error),
    );
}

/// The bridge's Prometheus metrics (one registry per bridge, so bridges in
/// one process, as in the tests, count apart).
pub struct Metrics {
    registry: prometheus::Registry,
    pub messages_received: prometheus::IntCounter,
    pub messages_sent: prometheus::IntCounter,
    pub reconnects: prometheus::IntCounter,
    /// Commits of incoming messages the store refused (each is retried,
    /// then the batch goes back to WhatsApp unacknowledged).
    pub commit_failures: prometheus::IntCounter,
    /// By outcome: delivered, retried, dead.
    pub deliveries: prometheus::IntCounterVec,
    /// From an event's creation to its delivery.
    pub delivery_latency: prometheus::Histogram,
    sessions: prometheus::IntGaugeVec,
    queue_depth: prometheus::IntGauge,
}

impl Metrics {
    pub fn new() -> Self {
        use prometheus::{
            Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
        };
        let registry = prometheus::Registry::new();
        // The names and help texts are constants: building them cannot fail.
        let counter = |name: &str, help: &str| {
            IntCounter::new(name, help).unwrap_or_else(|_| unreachable!("valid metric {name}"))
        };
        let m = Self {
            messages_received: counter(
                "wapi_messages_received_total",
                "Incoming messages committed to the outbox",
            ),
            messages_sent: counter("wapi_messages_sent_total", "Messages sent through the API"),
            reconnects: counter(
                "wapi_reconnects_total",
                "Connections made again after a drop",
            ),
            commit_failures: counter(
                "wapi_inbound_commit_failures_total",
                "Attempts to commit incoming messages that the store refused",
            ),
            deliveries: IntCounterVec::new(
                Opts::new(
                    "wapi_webhook_deliveries_total",
                    "Webhook delivery attempts by outcome",
                ),
                &["outcome"],
            )
            .unwrap_or_else(|_| unreachable!("valid metric")),
            delivery_latency: Histogram::with_opts(
                HistogramOpts::new(
                    "wapi_webhook_delivery_seconds",
                    "Time from an event's creation to its delivery",
                )
                .buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                    300.0,
                ]),
            )
            .unwrap_or_else(|_| unreachable!("valid metric")),
            sessions: IntGaugeVec::new(
                Opts::new("wapi_sessions", "Sessions by status"),
                &["status"],
            )
            .unwrap_or_else(|_| unreachable!("valid metric")),
            queue_depth: IntGauge::new(
                "wapi_webhook_queue_depth",
                "Webhook events waiting for delivery",
            )
            .unwrap_or_else(|_| unreachable!("valid metric")),
            registry,
        };
        for c in [
            Box::new(m.messages_received.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.messages_sent.clone()),
            Box::new(m.reconnects.clone()),
            Box::new(m.commit_failures.clone()),
            Box::new(m.deliveries.clone()),
            Box::new(m.delivery_latency.clone()),
            Box::new(m.sessions.clone()),
            Box::new(m.queue_depth.clone()),
        ] {
            // Each name is registered once, here.
            let _ = m.registry.register(c);
        }
        m
    }

    /// The text exposition, with the gauges set to `sessions` (status ->
    /// count) and `queued` first.
    pub fn render(&self, sessions: &[(String, i64)], queued: i64) -> String {
        self.sessions.reset();
        for (status, n) in sessions {
            self.sessions.with_label_values(&[status]).set(*n);
        }
        self.queue_depth.set(queued);
        let mut out = String::new();
        let encoder = prometheus::TextEncoder::new();
        if let Err(e) = encoder.encode_utf8(&self.registry.gather(), &mut out) {
            tracing::warn!("cannot encode metrics: {e}");
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
