//! sled insert costs on this machine (for BENCHMARKS.md's ledger section).
use std::time::Instant;
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(&args[1]);
    let n: u64 = args[2].parse().unwrap();
    let mode = args[3].as_str();
    let db = sled::Config::new()
        .path(&dir)
        .cache_capacity(64 << 20)
        .mode(sled::Mode::HighThroughput)
        .open()
        .unwrap();
    let t = db.open_tree("t").unwrap();
    let started = Instant::now();
    let per_batch = 500u64;
    let mut i = 0u64;
    while i < n {
        let mut b = sled::Batch::default();
        let mut keys: Vec<Vec<u8>> = Vec::new();
        for j in i..(i + per_batch).min(n) {
            let key: Vec<u8> = match mode {
                "random" | "random-big" | "random-sorted" => {
                    blake3::hash(&j.to_le_bytes()).as_bytes().to_vec()
                }
                _ => j.to_be_bytes().to_vec(),
            };
            keys.push(key);
        }
        if mode == "random-sorted" {
            keys.sort();
        }
        for k in keys {
            let v = if mode == "random-big" || mode == "seq-big" {
                vec![7u8; 500]
            } else {
                vec![7u8; 12]
            };
            b.insert(k, v);
        }
        t.apply_batch(b).unwrap();
        db.flush().unwrap();
        i += per_batch;
    }
    let s = started.elapsed().as_secs_f64();
    println!(
        "{mode}: {n} inserts in {s:.2} s = {:.2} us/insert",
        s * 1e6 / n as f64
    );
}
