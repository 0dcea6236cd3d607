//! A TDMR layout someone else built, read into the module's ABI: a JSON plan (`tdmr plan
//! --format json`, or any tool's in the same fields) or a hex dump of `TDMR_INFO` entries.
//! Anything that cannot be one is an error naming the offending value.

use serde_json::Value;
use tdmr::addr::PhysRange;
use tdmr::report::json::SCHEMA;
use tdmr::tdx::abi::{TDMR_INFO_ALIGNMENT, TDMR_INFO_RESERVED_SLOTS, TdmrInfo, TdmrReservedEntry};

use crate::CliError;

/// How the layout is written.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutFormat {
    /// JSON when the file starts with `{` or `[`, else a hex dump.
    Auto,
    /// A JSON plan: `tdmrs[]` with `base`, `size`, `reserved[]` (`offset`, `size`) and
    /// `pamt.{4k,2m,1g}` (`base`, `size`); optional `excluded[]` (`base`, `size`).
    Json,
    /// A hex dump of 512-byte TDMR_INFO entries: plain hex (`xxd -p`) or `xxd`'s dump
    /// (offsets before `:` and the text column after two blanks are skipped).
    Hex,
}

/// The layout as the module would read it.
#[derive(Debug)]
pub struct Layout {
    /// The TDMR_INFO entries, in order.
    pub infos: Vec<TdmrInfo>,
    /// Memory the layout leaves out on purpose (a JSON plan's `excluded`).
    pub excluded: Vec<PhysRange>,
    /// `json` or `hex`.
    pub format: &'static str,
}

/// Reads `text` (named `name` in errors).
pub fn read(text: &str, format: LayoutFormat, name: &str) -> Result<Layout, CliError> {
    let json = match format {
        LayoutFormat::Json => true,
        LayoutFormat::Hex => false,
        LayoutFormat::Auto => text.trim_start().starts_with(['{', '[']),
    };
    if json {
        from_json(text, name)
    } else {
        from_hex(text, name)
    }
}

/// `what`'s value at `path` as an unsigned 64-bit integer.
fn int(v: &Value, path: &str, name: &str) -> Result<u64, CliError> {
    match v {
        Value::Number(n) if n.is_u64() => Ok(n.as_u64().unwrap_or_default()),
        Value::Null => Err(CliError::new(format!("{name}: {path}: missing"))),
        other => Err(CliError::new(format!(
            "{name}: {path}: expected an integer from 0 to 2^64 - 1, found {other}"
        ))),
    }
}

fn array<'a>(v: &'a Value, path: &str, name: &str) -> Result<&'a Vec<Value>, CliError> {
    match v {
        Value::Array(a) => Ok(a),
        Value::Null => Err(CliError::new(format!("{name}: {path}: missing"))),
        other => Err(CliError::new(format!(
            "{name}: {path}: expected an array, found {other}"
        ))),
    }
}

fn from_json(text: &str, name: &str) -> Result<Layout, CliError> {
    let doc: Value = serde_json::from_str(text)
        .map_err(|e| CliError::new(format!("{name}: not a JSON plan: {e}")))?;
    if !doc.is_object() {
        return Err(CliError::new(format!(
            "{name}: a JSON plan is an object, found {}",
            short(&doc)
        )));
    }
    match &doc["schema"] {
        Value::Null => {}
        v if v.as_u64() == Some(u64::from(SCHEMA)) => {}
        v => {
            return Err(CliError::new(format!(
                "{name}: schema: {v} is not a schema this tdmr reads ({SCHEMA})"
            )));
        }
    }
    match &doc["status"] {
        Value::Null => {}
        Value::String(s) if s == "ok" => {}
        v => {
            return Err(CliError::new(format!(
                "{name}: status: {v}: the plan holds no layout"
            )));
        }
    }
    let tdmrs = array(&doc["tdmrs"], "tdmrs", name)?;
    let mut infos = Vec::with_capacity(tdmrs.len());
    for (i, t) in tdmrs.iter().enumerate() {
        let p = |field: &str| format!("tdmrs[{i}].{field}");
        let mut info = TdmrInfo::ZERO;
        info.base = int(&t["base"], &p("base"), name)?;
        info.size = int(&t["size"], &p("size"), name)?;
        for (level, field) in [("4k", 0), ("2m", 1), ("1g", 2)] {
            let pamt = &t["pamt"][level];
            let base = int(&pamt["base"], &p(&format!("pamt.{level}.base")), name)?;
            let size = int(&pamt["size"], &p(&format!("pamt.{level}.size")), name)?;
            match field {
                0 => (info.pamt_4k_base, info.pamt_4k_size) = (base, size),
                1 => (info.pamt_2m_base, info.pamt_2m_size) = (base, size),
                _ => (info.pamt_1g_base, info.pamt_1g_size) = (base, size),
            }
        }
        let reserved = array(&t["reserved"], &p("reserved"), name)?;
        if reserved.len() > TDMR_INFO_RESERVED_SLOTS {
            return Err(CliError::new(format!(
                "{name}: {}: {} reserved areas, a TDMR_INFO holds {TDMR_INFO_RESERVED_SLOTS}",
                p("reserved"),
                reserved.len()
            )));
        }
        for (k, r) in reserved.iter().enumerate() {
            info.reserved[k] = TdmrReservedEntry {
                offset: int(&r["offset"], &p(&format!("reserved[{k}].offset")), name)?,
                size: int(&r["size"], &p(&format!("reserved[{k}].size")), name)?,
            };
        }
        infos.push(info);
    }
    let mut excluded = Vec::new();
    if !doc["excluded"].is_null() {
        for (k, e) in array(&doc["excluded"], "excluded", name)?
            .iter()
            .enumerate()
        {
            let base = int(&e["base"], &format!("excluded[{k}].base"), name)?;
            let size = int(&e["size"], &format!("excluded[{k}].size"), name)?;
            excluded.push(PhysRange::from_base_size(base, size).map_err(|err| {
                CliError::new(format!(
                    "{name}: excluded[{k}]: base {base:#x} size {size:#x}: {err}"
                ))
            })?);
        }
    }
    Ok(Layout {
        infos,
        excluded,
        format: "json",
    })
}

/// A value, cut short for a message.
fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 40 {
        format!("{}...", &s[..s.floor_char_boundary(40)])
    } else {
        s
    }
}

fn from_hex(text: &str, name: &str) -> Result<Layout, CliError> {
    let mut bytes = Vec::new();
    for (no, line) in text.lines().enumerate() {
        // xxd: `00000200: 0000 ... 0000  ................`.
        let data = match line.split_once(':') {
            Some((offset, rest))
                if !offset.trim().is_empty()
                    && offset.trim().bytes().all(|b| b.is_ascii_hexdigit()) =>
            {
                let rest = rest.trim_start();
                rest.split_once("  ").map_or(rest, |(hex, _text)| hex)
            }
            _ => line,
        };
        let mut pending: Option<u8> = None;
        for (col, c) in data.char_indices() {
            if c.is_whitespace() {
                continue;
            }
            let Some(d) = c.to_digit(16) else {
                return Err(CliError::new(format!(
                    "{name}: line {}: `{c}` (column {}) is not a hexadecimal digit",
                    no + 1,
                    col + 1
                )));
            };
            match pending.take() {
                Some(hi) => bytes.push(hi << 4 | d as u8),
                None => pending = Some(d as u8),
            }
        }
        if pending.is_some() {
            return Err(CliError::new(format!(
                "{name}: line {}: an odd number of hexadecimal digits",
                no + 1
            )));
        }
    }
    if bytes.is_empty() || bytes.len() % TDMR_INFO_ALIGNMENT != 0 {
        return Err(CliError::new(format!(
            "{name}: {} bytes: not a whole number of {TDMR_INFO_ALIGNMENT}-byte TDMR_INFO entries",
            bytes.len()
        )));
    }
    let infos = bytes
        .chunks_exact(TDMR_INFO_ALIGNMENT)
        .map(|c| {
            let mut entry = [0u8; TDMR_INFO_ALIGNMENT];
            entry.copy_from_slice(c);
            TdmrInfo::from_bytes(&entry)
        })
        .collect();
    Ok(Layout {
        infos,
        excluded: Vec::new(),
        format: "hex",
    })
}
