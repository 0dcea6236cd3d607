//! Writing the output: standard output (a reader that stops early is no error), and the JSON
//! documents every subcommand prints — `"schema"` first, then where the input came from, then
//! the subcommand's fields.

use std::io::Write;

use serde_json::{Map, Value, json};
use tdmr::report::json::SCHEMA;

use crate::CliError;
use crate::loaded::Loaded;

/// Writes `text` to standard output; a closed pipe (`tdmr plan | head`) is not an error.
pub fn write_stdout(text: &str) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(CliError::new(format!("writing the output: {e}")))
        }
        _ => Ok(()),
    }
}

/// `{"schema":1,"input":...,"sources":[...],"assumed":[...]}`: the head of every document that
/// reads a machine.
pub fn head(loaded: &Loaded) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("schema".into(), json!(SCHEMA));
    m.insert("input".into(), json!(loaded.name));
    m.insert(
        "sources".into(),
        loaded
            .sources
            .iter()
            .map(|s| {
                json!({
                    "source": s.source,
                    "path": s.path,
                    "used": s.used,
                    "detail": s.detail,
                })
            })
            .collect(),
    );
    m.insert("assumed".into(), json!(loaded.assumed));
    m.insert(
        "sysfs_module_version".into(),
        json!(loaded.sysfs_version.map(|v| v.to_string())),
    );
    m
}

/// Appends the fields of a JSON object rendered by the library (its `"schema"` is already in
/// `doc`).
pub fn extend(doc: &mut Map<String, Value>, rendered: &str) {
    match serde_json::from_str::<Value>(rendered) {
        Ok(Value::Object(fields)) => {
            for (k, v) in fields {
                if k != "schema" {
                    doc.insert(k, v);
                }
            }
        }
        // The library renders objects; anything else is a bug to see, not to hide.
        other => {
            doc.insert("unparsed".into(), json!(format!("{other:?}")));
        }
    }
}

/// The document as one line of JSON.
pub fn line(doc: Map<String, Value>) -> String {
    let mut s = Value::Object(doc).to_string();
    s.push('\n');
    s
}

/// A SEAMCALL status as every document gives it:
/// `{"raw":"0xc0000a1200010103","name":"TDX_PAMT_OVERLAP","text":"TDX_PAMT_OVERLAP (...)"}`.
pub fn status(s: tdmr::tdx::status::Status) -> Value {
    json!({
        "raw": format!("{:#018x}", s.raw()),
        "name": s.name(),
        "text": s.to_string(),
    })
}
