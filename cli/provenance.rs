//! `cutover provenance RECORD`: a record's whole story from the ledger —
//! extracted, quarantined, transformed, written, confirmed or failed,
//! compensated — with hashes, times and runs. RECORD is a source record
//! (`Entity/Key`, e.g. `Patient/1001`; composite keys keep their slashes,
//! `PerioExamSite/1001/3/MB`) or a destination id.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args as ClapArgs;
use cutover_ledger::{Event, EventBody, Ledger};
use serde_json::json;

use crate::exit::{fail, Exit};
use crate::output::Output;

#[derive(Debug, ClapArgs)]
pub struct Args {
    /// `Entity/Key` (a source record) or a destination id.
    pub record: String,
    /// The ledger directory (default: the project's, from cutover.toml).
    #[arg(long)]
    pub ledger: Option<PathBuf>,
}

pub fn run(args: Args, out: Output) -> anyhow::Result<Exit> {
    let dir = crate::project::required(args.ledger, |p| p.ledger.clone(), "ledger")?;
    let ledger =
        Ledger::open(&dir).with_context(|| format!("opening the ledger at {}", dir.display()))?;
    let mut records: Vec<(String, String)> = Vec::new();
    if let Some((entity, key)) = args.record.split_once('/') {
        if ledger.record_state(entity, key)?.is_some() {
            records.push((entity.to_string(), key.to_string()));
        }
    }
    if records.is_empty() {
        for (_, source) in ledger.find_dest_id(&args.record)? {
            records.push((source.entity, source.key));
        }
    }
    if records.is_empty() {
        return Err(fail(Exit::Failed, format!("{:?} is neither a source record (Entity/Key) nor a destination id in the ledger at {}", args.record, dir.display())));
    }
    for (entity, key) in records {
        let state = ledger.record_state(&entity, &key)?;
        let story = ledger.record_history(&entity, &key)?;
        out.event(
            "provenance",
            &json!({
                "entity": entity,
                "key": key,
                "state": state,
                "events": story.iter().map(event_json).collect::<Vec<_>>(),
            }),
        );
        out.human(format!("{entity}/{key}"));
        if let Some(state) = &state {
            for (object, target) in &state.targets {
                out.human(format!(
                    "  {object}: {:?}{}",
                    target.status,
                    target
                        .dest_id
                        .as_ref()
                        .map(|id| format!(", destination id {id}"))
                        .unwrap_or_default()
                ));
            }
            if let Some(reasons) = &state.quarantine {
                let codes: Vec<&str> = reasons.iter().map(|r| r.code.as_str()).collect();
                out.human(format!("  quarantined: {}", codes.join(", ")));
            }
        }
        for event in &story {
            out.human(format!(
                "  {:>8}  {}  run {:<6} {:<16} {}",
                event.seq,
                event.record.at,
                event.record.run,
                event.record.body.kind(),
                summary(&event.record.body)
            ));
        }
    }
    Ok(Exit::Clean)
}

fn event_json(event: &Event) -> serde_json::Value {
    json!({
        "seq": event.seq,
        "at": event.record.at,
        "run": event.record.run,
        "kind": event.record.body.kind(),
        "event": event.record.body,
        "hash": event.hash,
        "prev_hash": event.prev_hash,
    })
}

/// One line of what an event says, hashes shortened (the JSON has them whole).
fn summary(body: &EventBody) -> String {
    let short = |d: &cutover_ledger::Digest| d.to_hex()[..12].to_string();
    match body {
        EventBody::Extracted { content_hash, .. } => format!("row {}", short(content_hash)),
        EventBody::Transformed {
            object,
            payload_hash,
            map_hash,
            ..
        } => format!(
            "→ {object} payload {} map {}",
            short(payload_hash),
            short(map_hash)
        ),
        EventBody::Quarantined { reasons, .. } => reasons
            .iter()
            .map(|r| format!("{} ({})", r.code, r.detail))
            .collect::<Vec<_>>()
            .join("; "),
        EventBody::WriteIntended {
            op,
            object,
            idempotency_key,
            payload_hash,
            dest_id,
            ..
        } => format!(
            "{op:?} {object} key {idempotency_key} payload {}{}",
            short(payload_hash),
            dest_id
                .as_ref()
                .map(|id| format!(" id {id}"))
                .unwrap_or_default()
        ),
        EventBody::WriteConfirmed {
            intent,
            dest_id,
            response_hash,
        } => format!(
            "intent {intent} → id {dest_id} response {}",
            short(response_hash)
        ),
        EventBody::WriteFailed {
            intent,
            class,
            status,
            message,
        } => format!(
            "intent {intent} {class:?}{} {message}",
            status.map(|s| format!(" HTTP {s}")).unwrap_or_default()
        ),
        EventBody::Compensated {
            intent,
            outcome,
            detail,
        } => format!("intent {intent} {outcome:?} {detail}"),
        other => other.kind().to_string(),
    }
}
