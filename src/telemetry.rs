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
