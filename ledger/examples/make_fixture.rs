//! Writes the small on-disk ledger fixtures `tests/fixtures/store-layout-1` (commit d80fc8e)
//! and `tests/fixtures/store-layout-2` (commit after 504e8f7) with the build at hand (kept to
//! show how they were made; they are never regenerated).
use cutover_ledger::{Digest, EventBody, Ledger, Micros, RunKind, WriteOp};
fn main() -> anyhow::Result<()> {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).expect("DIR"));
    let mut ledger = Ledger::create(&dir)?;
    let map = ledger.put_blob(b"{\"map\":\"fixture\"}")?;
    let run = ledger.start_run(RunKind::Full, "export:fixture", "sandbox:twenty", Some(map))?;
    ledger.append(run, [EventBody::MapConfirmed { map_hash: map }])?;
    for i in 0..3u32 {
        let key = format!("{}", 1000 + i);
        let row = format!("row {key}");
        let content_hash = ledger.put_blob(row.as_bytes())?;
        let payload = format!("{{\"name\":\"patient {key}\"}}");
        let payload_hash = ledger.put_blob(payload.as_bytes())?;
        let intent = ledger.head().seq + 3;
        ledger.append_at(
            Micros(1_763_000_000_000_000 + i as i64),
            run,
            [
                EventBody::Extracted {
                    entity: "Patient".into(),
                    key: key.clone(),
                    content_hash,
                    modified_at: None,
                },
                EventBody::Transformed {
                    entity: "Patient".into(),
                    key: key.clone(),
                    object: "person".into(),
                    payload_hash,
                    map_hash: map,
                },
                EventBody::WriteIntended {
                    op: WriteOp::Create,
                    object: "person".into(),
                    entity: "Patient".into(),
                    key: key.clone(),
                    idempotency_key: format!("person:Patient:{key}"),
                    payload_hash,
                    before_image: None,
                    dest_id: None,
                },
                EventBody::WriteConfirmed {
                    intent,
                    dest_id: format!("dest-{key}"),
                    response_hash: Digest::of(payload.as_bytes()),
                },
            ],
        )?;
    }
    ledger.finish_run(run, cutover_ledger::RunOutcome::Completed, "fixture")?;
    println!("{} events, head {}", ledger.head().seq, ledger.head().hash);
    Ok(())
}
