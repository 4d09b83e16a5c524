//! Runs the TDS test server standalone (for the benchmark, manual checks with
//! other clients, or a demo): `tds-testserver DB.sqlite3 [--tls off|login|on|required]
//! [--instance NAME] [--user U]`; the password comes from `CUTOVER_SQL_PASSWORD`.

use cutover_tds_testserver::{Encryption, ServerConfig, TdsServer};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let Some(database) = args.next() else {
        eprintln!("usage: tds-testserver DB.sqlite3 [--tls off|login|on|required] [--instance NAME] [--user U]");
        std::process::exit(64);
    };
    let mut config = ServerConfig::new(database);
    let password = std::env::var("CUTOVER_SQL_PASSWORD").unwrap_or_else(|_| "panda-test-pw".into());
    let mut user = "panda_ro".to_string();
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_default();
        match flag.as_str() {
            "--tls" => {
                config.encryption = match value.as_str() {
                    "off" => Encryption::NotSupported,
                    "login" => Encryption::Off,
                    "on" => Encryption::On,
                    "required" => Encryption::Required,
                    other => {
                        eprintln!("unknown --tls mode {other:?}");
                        std::process::exit(64);
                    }
                }
            }
            "--instance" => config.instance_name = Some(value),
            "--user" => user = value,
            other => {
                eprintln!("unknown flag {other:?}");
                std::process::exit(64);
            }
        }
    }
    config.logins = vec![(user, password)];
    let server = match TdsServer::start(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot start: {e}");
            std::process::exit(1);
        }
    };
    match server.browser_port() {
        Some(b) => println!(
            "listening on 127.0.0.1:{} (SQL Browser on udp 127.0.0.1:{b})",
            server.port()
        ),
        None => println!("listening on 127.0.0.1:{}", server.port()),
    }
    let _ = tokio::signal::ctrl_c().await;
}
