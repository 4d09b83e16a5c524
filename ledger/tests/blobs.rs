//! Blobs in store layout 3 (pack files, directories filed by seq, see `src/store.rs`),
//! and ledgers written with store layout 1 (blobs keyed by digest in sled) and 2 (packs
//! inside sled) still opening, verifying and serving their blobs.

use std::path::{Path, PathBuf};

use cutover_ledger::{Digest, EventBody, Ledger, Micros, RunKind, WriteOp};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn extracted(key: &str, content_hash: Digest) -> EventBody {
    EventBody::Extracted {
        entity: "Patient".into(),
        key: key.into(),
        content_hash,
        modified_at: None,
    }
}

/// Every blob an event names, found through the event and checked.
fn assert_event_blobs(ledger: &Ledger, expected: &[(Digest, Vec<u8>)]) {
    let mut seen = 0;
    ledger
        .scan(1, |event| {
            let digests: Vec<Digest> = match &event.record.body {
                EventBody::Extracted { content_hash, .. } => vec![*content_hash],
                EventBody::Transformed { payload_hash, .. } => vec![*payload_hash],
                _ => vec![],
            };
            for d in digests {
                let want = expected
                    .iter()
                    .find(|(e, _)| *e == d)
                    .map(|(_, b)| b.clone());
                if let Some(want) = want {
                    assert_eq!(
                        ledger.event_blob(event.seq, &d).unwrap(),
                        Some(want.clone()),
                        "event {} blob {d}",
                        event.seq
                    );
                    assert_eq!(ledger.blob(&d).unwrap(), Some(want));
                    seen += 1;
                }
            }
            Ok(true)
        })
        .unwrap();
    assert!(seen > 0);
}

/// `tests/fixtures/store-layout-1` was written by the build before layout 2
/// (`examples/make_fixture.rs`, commit d80fc8e) and is never regenerated.
#[test]
fn a_layout_1_ledger_opens_verifies_serves_its_blobs_and_takes_new_ones() {
    an_older_ledger_opens_verifies_serves_its_blobs_and_takes_new_ones(
        "store-layout-1",
        1,
        "3a4c3912654cb3dfdee78757f2b29abf53dbdb46762b61d170459da99624f8bf",
    );
}

/// `tests/fixtures/store-layout-2` was written by the build before layout 3 (the same
/// example, commit 075719f) and is never regenerated.
#[test]
fn a_layout_2_ledger_opens_verifies_serves_its_blobs_and_takes_new_ones() {
    an_older_ledger_opens_verifies_serves_its_blobs_and_takes_new_ones(
        "store-layout-2",
        2,
        "472d4ab81be164b956eb9c221de96dd4bcd942c4eeef732376ebd7e9e18ba672",
    );
}

fn an_older_ledger_opens_verifies_serves_its_blobs_and_takes_new_ones(
    fixture_name: &str,
    version: u32,
    head: &str,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger");
    copy_dir(&fixture(fixture_name), &path);
    let marker = std::fs::read_to_string(path.join("LEDGER")).unwrap();
    assert!(
        marker.contains(&format!("\"version\": {version}")),
        "{marker}"
    );

    let mut ledger = Ledger::open(&path).unwrap();
    assert_eq!(ledger.verify().unwrap(), 15);
    assert_eq!(ledger.head().hash.to_hex(), head);
    assert_eq!(
        ledger.replay_projections().unwrap(),
        ledger.projection_snapshot().unwrap()
    );
    // Opening by this build marks it layout 3, so an older build refuses it.
    let marker = std::fs::read_to_string(path.join("LEDGER")).unwrap();
    assert!(marker.contains("\"version\": 3"), "{marker}");

    // The blobs written by layout 1, by digest and through their events.
    let map = ledger.confirmed_map().unwrap().expect("a confirmed map");
    assert_eq!(
        ledger.blob(&map).unwrap().as_deref(),
        Some(&b"{\"map\":\"fixture\"}"[..])
    );
    let mut old = Vec::new();
    for i in 0..3 {
        let key = 1000 + i;
        old.push((
            Digest::of(format!("row {key}").as_bytes()),
            format!("row {key}").into_bytes(),
        ));
        let payload = format!("{{\"name\":\"patient {key}\"}}");
        old.push((Digest::of(payload.as_bytes()), payload.into_bytes()));
    }
    assert_event_blobs(&ledger, &old);

    // New blobs go to pack files beside the old ones.
    let run = ledger
        .start_run(RunKind::Delta, "export:fixture", "sandbox:twenty", None)
        .unwrap();
    let row = b"row 2000 after the upgrade".to_vec();
    let row_len = row.len();
    let d = ledger.put_blob(&row).unwrap();
    ledger.append(run, [extracted("2000", d)]).unwrap();
    drop(ledger);

    let ledger = Ledger::open(&path).unwrap();
    assert_eq!(ledger.verify().unwrap(), 17);
    let mut all = old.clone();
    all.push((d, row));
    assert_event_blobs(&ledger, &all);
    let stats = ledger.stats().unwrap();
    assert_eq!(stats.blobs, 8, "7 older blobs and one in a pack file");
    assert!(
        std::fs::metadata(path.join("packs/00000000.pack"))
            .unwrap()
            .len()
            >= row_len as u64,
        "the new blob is in the pack file"
    );
}

#[test]
fn blobs_are_found_through_their_events_by_digest_and_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger");
    let mut ledger = Ledger::create(&path).unwrap();
    let map_bytes = b"{\"rules\":[]}".to_vec();
    let map = ledger.put_blob(&map_bytes).unwrap();
    let run = ledger
        .start_run(RunKind::Full, "export:t", "sandbox:t", Some(map))
        .unwrap();
    let mut expected = Vec::new();
    let mut key = 0u32;
    for commit in 0..12u32 {
        let mut batch = Vec::new();
        for i in 0..40u32 {
            key += 1;
            // Sizes from a few bytes to past a pack (64 KiB), so packs split and
            // a large blob gets a pack of its own.
            let size = match (commit + i) % 7 {
                0 => 3,
                1 => 70_000,
                _ => 200 + (i as usize * 37) % 3000,
            };
            let bytes: Vec<u8> = (0..size).map(|b| (b as u32 ^ key) as u8).collect();
            let d = ledger.put_blob(&bytes).unwrap();
            // The same bytes put twice before a commit are stored once.
            assert_eq!(ledger.put_blob(&bytes).unwrap(), d);
            batch.push(extracted(&key.to_string(), d));
            expected.push((d, bytes));
        }
        if commit % 4 == 3 {
            // Blobs committed by a flush without events, then appended under the same seq.
            ledger.flush().unwrap();
        }
        if commit % 3 == 2 {
            ledger.append_buffered(run, batch).unwrap();
        } else {
            ledger.append(run, batch).unwrap();
        }
    }
    ledger.flush().unwrap();
    assert_event_blobs(&ledger, &expected);
    assert_eq!(ledger.blob(&map).unwrap(), Some(map_bytes.clone()));
    assert_eq!(ledger.blob(&Digest::of(b"never put")).unwrap(), None);
    assert_eq!(
        ledger
            .event_blob(ledger.head().seq, &Digest::of(b"never put"))
            .unwrap(),
        None
    );
    let stats = ledger.stats().unwrap();
    assert_eq!(stats.blobs, expected.len() as u64 + 1);
    assert_eq!(
        stats.blob_bytes,
        expected.iter().map(|(_, b)| b.len() as u64).sum::<u64>() + map_bytes.len() as u64
    );
    drop(ledger);

    let mut ledger = Ledger::open(&path).unwrap();
    assert_event_blobs(&ledger, &expected);
    assert_eq!(ledger.blob(&map).unwrap(), Some(map_bytes));
    // Appending after reopening files new blobs after the old ones.
    let bytes = b"after reopening".to_vec();
    let d = ledger.put_blob(&bytes).unwrap();
    ledger.flush().unwrap();
    drop(ledger);
    let mut ledger = Ledger::open(&path).unwrap();
    let intent = ledger.head().seq + 1;
    ledger
        .append_at(
            Micros(1),
            run,
            [EventBody::WriteIntended {
                op: WriteOp::Create,
                object: "person".into(),
                entity: "Patient".into(),
                key: "1".into(),
                idempotency_key: "person:Patient:1".into(),
                payload_hash: d,
                before_image: None,
                dest_id: None,
            }],
        )
        .unwrap();
    assert_eq!(ledger.event_blob(intent, &d).unwrap(), Some(bytes.clone()));
    assert_eq!(ledger.blob(&d).unwrap(), Some(bytes));
    assert_eq!(ledger.verify().unwrap(), ledger.head().seq);
    // Lookups by digest alone learned where the blobs sit; blobs filed after that
    // are still found by the same open ledger.
    let later = b"filed after a lookup by digest".to_vec();
    let d = ledger.put_blob(&later).unwrap();
    ledger.append(run, [extracted("later", d)]).unwrap();
    assert_eq!(ledger.blob(&d).unwrap(), Some(later));
    assert_eq!(ledger.blob(&Digest::of(b"still never put")).unwrap(), None);
}
