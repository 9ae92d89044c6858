//! Tool schemas every MCP client can drive, and arguments read the way such clients send them.
//!
//! schemars types an optional parameter as `["integer", "null"]` (or `anyOf` with `null`);
//! form-based clients such as the MCP Inspector then cannot offer the field properly and send
//! numbers and booleans as strings. Here optional parameters keep their plain type (absence is
//! what makes them optional), closed sets get an `enum`, budgets a `minimum`, every tool its
//! annotations; and a string sent for a plain scalar parameter is read as that scalar.

use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use serde_json::{Value, json};

/// Tools that only read.
const READ_ONLY: &[&str] = &[
    "avm_recall",
    "avm_browse",
    "avm_fetch",
    "avm_search",
    "avm_semantic",
    "avm_list",
    "avm_read",
    "avm_tags",
    "avm_recent",
    "avm_stats",
    "avm_topics",
    "avm_who_knows",
    "avm_digest",
];

/// Tools that may overwrite or remove what exists.
const DESTRUCTIVE: &[&str] = &["avm_write", "avm_forget"];

/// Tools that change nothing more when called again with the same arguments.
const IDEMPOTENT: &[&str] = &["avm_write", "avm_forget", "avm_link", "avm_remember"];

/// Closed sets of values, by parameter name.
const ENUMS: &[(&str, &[&str])] = &[
    (
        "strategy",
        &["balanced", "relevance", "importance", "recency"],
    ),
    ("priority", &["urgent", "normal", "low"]),
];

/// Parameters that count something and must be at least 1.
const COUNTS: &[&str] = &["max_tokens", "limit", "max"];

/// Rewrites `tool`'s input schema and annotations (see the module doc).
pub fn tune(tool: &mut Tool) {
    let mut schema = (*tool.input_schema).clone();
    if let Some(Value::Object(props)) = schema.get_mut("properties") {
        for (name, prop) in props.iter_mut() {
            if let Value::Object(p) = prop {
                plain(p);
                if let Some((_, values)) = ENUMS.iter().find(|(n, _)| n == name) {
                    p.insert("enum".into(), json!(values));
                }
                if COUNTS.contains(&name.as_str()) {
                    p.insert("minimum".into(), json!(1));
                }
            }
        }
    }
    tool.input_schema = std::sync::Arc::new(schema);
    let name = tool.name.as_ref();
    let mut a = ToolAnnotations::new();
    a.read_only_hint = Some(READ_ONLY.contains(&name));
    a.destructive_hint = Some(DESTRUCTIVE.contains(&name));
    a.idempotent_hint = Some(READ_ONLY.contains(&name) || IDEMPOTENT.contains(&name));
    a.open_world_hint = Some(false);
    tool.annotations = Some(a);
}

/// Drops `null` from a property's type: `["integer","null"]` → `"integer"`, and an `anyOf` of
/// one schema and `{"type":"null"}` → that schema.
fn plain(p: &mut JsonObject) {
    if let Some(Value::Array(types)) = p.get("type") {
        let kept: Vec<Value> = types
            .iter()
            .filter(|t| t.as_str() != Some("null"))
            .cloned()
            .collect();
        let t = if kept.len() == 1 {
            kept[0].clone()
        } else {
            Value::Array(kept)
        };
        p.insert("type".into(), t);
    }
    if let Some(Value::Array(any)) = p.get("anyOf") {
        let kept: Vec<Value> = any
            .iter()
            .filter(|s| s.get("type").and_then(Value::as_str) != Some("null"))
            .cloned()
            .collect();
        if let [Value::Object(only)] = kept.as_slice() {
            let only = only.clone();
            p.remove("anyOf");
            for (k, v) in only {
                p.entry(k).or_insert(v);
            }
        } else {
            p.insert("anyOf".into(), Value::Array(kept));
        }
    }
    if let Some(Value::Object(items)) = p.get_mut("items") {
        plain(items);
    }
}

/// Reads a string sent for a parameter typed `integer`, `number` or `boolean` as that scalar
/// (`"300"` → 300, `"true"` → true); anything else is left for the tool to refuse.
pub fn coerce(schema: &JsonObject, args: &mut JsonObject) {
    let Some(Value::Object(props)) = schema.get("properties") else {
        return;
    };
    for (name, value) in args.iter_mut() {
        let (Some(prop), Value::String(s)) = (props.get(name), &*value) else {
            continue;
        };
        let t = s.trim();
        let parsed = match prop.get("type").and_then(Value::as_str) {
            Some("integer") => t.parse::<i64>().ok().map(Value::from),
            Some("number") => t
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(Value::from),
            Some("boolean") => match t {
                "true" => Some(Value::Bool(true)),
                "false" => Some(Value::Bool(false)),
                _ => None,
            },
            _ => None,
        };
        if let Some(v) = parsed {
            *value = v;
        }
    }
}

/// Checks `args` against `schema` (after [`coerce`]): required parameters present, unknown ones
/// named, each of its declared type; the first problem in the caller's words.
pub fn check(schema: &JsonObject, args: &JsonObject) -> Result<(), String> {
    let props = match schema.get("properties") {
        Some(Value::Object(p)) => p.clone(),
        _ => JsonObject::new(),
    };
    if let Some(Value::Array(required)) = schema.get("required") {
        for r in required.iter().filter_map(Value::as_str) {
            if args.get(r).is_none_or(Value::is_null) {
                return Err(format!("{r} is required"));
            }
        }
    }
    for (name, value) in args {
        let Some(prop) = props.get(name) else {
            let known: Vec<&str> = props.keys().map(String::as_str).collect();
            return Err(format!(
                "unknown parameter {name:?}; this tool takes {}",
                known.join(", ")
            ));
        };
        if value.is_null() {
            continue;
        }
        let want = prop.get("type").and_then(Value::as_str).unwrap_or("");
        let fits = match want {
            "integer" => value.as_i64().is_some() || value.as_u64().is_some(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "string" => value.is_string(),
            "array" => value.is_array(),
            "object" => value.is_object(),
            _ => true,
        };
        if !fits {
            let what = match want {
                "integer" => "a whole number",
                "number" => "a number",
                "boolean" => "true or false",
                "string" => "text",
                "array" => "a list",
                _ => "an object",
            };
            return Err(format!("{name} must be {what}, not {value}"));
        }
        if let Some(min) = prop.get("minimum").and_then(Value::as_f64)
            && value.as_f64().is_some_and(|v| v < min)
        {
            return Err(format!("{name} must be at least {min}, not {value}"));
        }
        if let Some(Value::Array(allowed)) = prop.get("enum")
            && !allowed.contains(value)
        {
            let names: Vec<String> = allowed.iter().map(Value::to_string).collect();
            return Err(format!(
                "{name} must be one of {}, not {value}",
                names.join(", ")
            ));
        }
    }
    Ok(())
}

/// A deserialisation message in the caller's words, not Rust's (`expected usize` → `expected a
/// whole number of 0 or more`).
pub fn plain_message(msg: &str) -> String {
    let mut m = msg.to_string();
    for (rust, plain) in [
        ("usize", "a whole number of 0 or more"),
        ("u64", "a whole number of 0 or more"),
        ("u32", "a whole number of 0 or more"),
        ("i64", "a whole number"),
        ("i32", "a whole number"),
        ("f64", "a number"),
        ("f32", "a number"),
    ] {
        m = m.replace(&format!("expected {rust}"), &format!("expected {plain}"));
    }
    m.replace("failed to deserialize parameters: ", "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optional_parameters_lose_null_and_strings_become_scalars() {
        let mut p: JsonObject =
            serde_json::from_value(json!({"type": ["integer", "null"], "format": "uint"})).unwrap();
        plain(&mut p);
        assert_eq!(p["type"], "integer");
        let mut q: JsonObject = serde_json::from_value(
            json!({"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}]}),
        )
        .unwrap();
        plain(&mut q);
        assert_eq!(q["type"], "array");
        assert!(q.get("anyOf").is_none());
        let schema: JsonObject = serde_json::from_value(json!({"properties": {
            "max_tokens": {"type": "integer"}, "mark_read": {"type": "boolean"},
            "query": {"type": "string"}, "importance": {"type": "number"}
        }}))
        .unwrap();
        let mut args: JsonObject = serde_json::from_value(json!({
            "max_tokens": "300", "mark_read": "true", "query": "42", "importance": "0.5"
        }))
        .unwrap();
        coerce(&schema, &mut args);
        assert_eq!(
            Value::Object(args),
            json!({"max_tokens": 300, "mark_read": true, "query": "42", "importance": 0.5})
        );
        assert_eq!(
            plain_message("invalid type: string \"x\", expected usize"),
            "invalid type: string \"x\", expected a whole number of 0 or more"
        );
    }
}
