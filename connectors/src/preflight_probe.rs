//! The synthetic records the CRM preflights write: one [`WriteRequest`] per
//! object kind, keyed `preflight:{run tag}:{object}` so a run's probes are
//! found by key, told apart from another run's, and never mistaken for
//! migrated data (entity `Preflight`, no PHI). Each destination's preflight
//! decides what to write and what to report; only the probe's identity is shared.

use cutover_engine::{SourceKey, WriteRequest};
use serde_json::Value;

/// The entity every probe claims to come from.
pub const PROBE_ENTITY: &str = "Preflight";

/// The idempotency key of run `run_tag`'s probe of `object`.
pub fn probe_key(run_tag: &str, object: &str) -> String {
    format!("preflight:{run_tag}:{object}")
}

/// A create request for run `run_tag`'s probe of `object` with `fields` (a JSON
/// object; anything else is an empty body).
pub fn probe_request(run_tag: &str, object: &str, fields: Value) -> WriteRequest {
    let key = probe_key(run_tag, object);
    WriteRequest {
        object: object.into(),
        idempotency_key: key.clone(),
        entity: PROBE_ENTITY.into(),
        source_key: SourceKey::new(key),
        client_id: None,
        body: match fields {
            Value::Object(map) => map,
            _ => Default::default(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_probe_is_keyed_by_run_and_object() {
        let request = probe_request("run7", "contact", json!({"firstName": "Probe"}));
        assert_eq!(request.object, "contact");
        assert_eq!(request.idempotency_key, "preflight:run7:contact");
        assert_eq!(request.source_key, SourceKey::new("preflight:run7:contact"));
        assert_eq!(request.entity, "Preflight");
        assert_eq!(request.client_id, None);
        assert_eq!(request.body["firstName"], "Probe");
        assert_ne!(
            probe_key("run7", "contact"),
            probe_key("run8", "contact"),
            "runs never share probes"
        );
    }

    #[test]
    fn a_body_that_is_not_an_object_is_empty() {
        assert!(probe_request("r", "note", json!(["x"])).body.is_empty());
    }
}
