//! Opt-in live test against a real HighLevel location: runs the preflight
//! (one synthetic record of every kind, written, read back, deleted) when
//! HIGHLEVEL_TOKEN and HIGHLEVEL_LOCATION_ID are set (HIGHLEVEL_BASE_URL
//! optional); otherwise prints why it did nothing. The only test that may
//! leave 127.0.0.1, and only when asked to.

use cutover_connectors::highlevel::{preflight, HighLevelConfig, HighLevelDestination};

#[tokio::test]
async fn live_location_passes_preflight() {
    let (Ok(_), Ok(location)) = (
        std::env::var("HIGHLEVEL_TOKEN"),
        std::env::var("HIGHLEVEL_LOCATION_ID"),
    ) else {
        eprintln!("skipped: set HIGHLEVEL_TOKEN and HIGHLEVEL_LOCATION_ID (and optionally HIGHLEVEL_BASE_URL) to run the live HighLevel test");
        return;
    };
    let base_url = std::env::var("HIGHLEVEL_BASE_URL").ok();
    let config =
        HighLevelConfig::from_env(base_url.as_deref(), Some(&location)).expect("configuration");
    let destination = HighLevelDestination::new(config).expect("client");
    let report = preflight(&destination, None).await;
    for check in &report.checks {
        eprintln!(
            "{} {} {} {:?} {:?} {}",
            if check.ok { "OK" } else { "FAILED" },
            check.step,
            check.operation,
            check.status,
            check.missing_scope,
            check.detail
        );
    }
    assert!(report.ok(), "live preflight failed; see the lines above");
}
