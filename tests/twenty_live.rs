//! Opt-in test against a real Twenty workspace: set TWENTY_URL (server root) and
//! TWENTY_API_KEY (a key whose role may write records and change the data model).
//! It runs the preflight — one synthetic record of every kind plus a temporary
//! custom object, read back and destroyed. Without both variables it prints why
//! it did nothing and passes.

use cutover_connectors::twenty::{preflight, ApiToken, TwentyClient, TwentyConfig};

#[tokio::test]
async fn live_workspace_preflight() {
    let (Ok(url), Ok(_)) = (std::env::var("TWENTY_URL"), std::env::var("TWENTY_API_KEY")) else {
        println!("skipped: set TWENTY_URL and TWENTY_API_KEY to run the live Twenty test");
        return;
    };
    let token = ApiToken::from_env().expect("TWENTY_API_KEY");
    let client =
        TwentyClient::new(TwentyConfig::new(&url, token).expect("TWENTY_URL")).expect("client");
    let report = preflight::run(&client).await;
    for step in &report.steps {
        println!(
            "{} {} {} {}ms {}",
            if step.ok { "ok  " } else { "FAIL" },
            step.step,
            step.endpoint,
            step.millis,
            step.detail
        );
    }
    assert!(report.ok(), "live preflight failed");
}
