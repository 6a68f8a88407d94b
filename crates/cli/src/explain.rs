//! `kiln build --explain` for people and machines: why each step that ran was not taken from
//! the cache, as lines after the build's progress, one JSON record per step in rawjson, and the
//! `kiln.explain` list of `--metadata-file`.

use kiln_engine::StepExplanation;

/// What a build says when every step came from the cache.
pub const NOTHING_RAN: &str = "nothing ran: every step came from the cache";

/// The plain-text report.
pub fn lines(explained: &[StepExplanation]) -> Vec<String> {
    if explained.is_empty() {
        return vec![format!("explain: {NOTHING_RAN}")];
    }
    let mut out = vec![format!(
        "explain: {} step{} ran instead of coming from the cache:",
        explained.len(),
        if explained.len() == 1 { "" } else { "s" }
    )];
    for step in explained {
        out.push(format!("  {}", step.name));
        for reason in &step.reasons {
            out.push(format!("    - {reason}"));
        }
    }
    out
}

/// One step as JSON: its vertex and name, and each reason's fields with its message.
pub fn json(step: &StepExplanation) -> serde_json::Value {
    let reasons: Vec<serde_json::Value> = step
        .reasons
        .iter()
        .map(|r| {
            let mut v = serde_json::to_value(r).unwrap_or_default();
            if let Some(obj) = v.as_object_mut() {
                obj.insert("message".into(), r.to_string().into());
            }
            v
        })
        .collect();
    serde_json::json!({"vertex": step.vertex, "name": step.name, "reasons": reasons})
}

/// The rawjson records: one per step, or one saying nothing ran.
pub fn records(explained: &[StepExplanation]) -> Vec<serde_json::Value> {
    if explained.is_empty() {
        return vec![serde_json::json!({"kind": "explain", "ran": false, "message": NOTHING_RAN})];
    }
    explained
        .iter()
        .map(|step| {
            let mut v = json(step);
            if let Some(obj) = v.as_object_mut() {
                obj.insert("kind".into(), "explain".into());
                obj.insert("ran".into(), true.into());
            }
            v
        })
        .collect()
}
