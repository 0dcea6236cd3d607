//! JSON rendering: plain integers, no floats, stable key order. Every document starts with
//! `"schema":1` ([`SCHEMA`]), the version of this contract; the `tdmr` command documents every
//! field in `docs/json.md`.
//!
//! ```text
//! {"schema":1,"status":"ok","strategy":"linux","holes":"memory","limits":{...},
//!  "cmrs":[{"base":B,"size":Z}],
//!  "tdmrs":[{"base":B,"size":Z,"node":N,"mixes_nodes":false,
//!            "pamt_node":P,"majority_node":M,            (measured from the memory map)
//!            "pamt_node_reason":"lowest-node",           (only when off the node)
//!            "reserved":[{"offset":O,"size":Z,"kind":"hole"}],
//!            "pamt":{"4k":{"base":B,"size":Z},"2m":{...},"1g":{...}}}],
//!  "pamt_bytes":P,"off_node_pamts":K,"excluded":[{"base":B,"size":Z}],
//!  "log_warnings":["..."]}
//! ```
//!
//! `node` is the node the PAMT was placed for; `pamt_node` the node whose memory holds the PAMT
//! block (most of it); `majority_node` the node holding most of the TDMR's memory (`null` when
//! no TDX memory holds them). `pamt_node_reason`, present when the block is not wholly on the
//! majority node, says why: `lowest-node` (Linux
//! takes the node of the TDMR's lowest memory), `allocator-fallback` (no room on the node asked
//! for), `no-room-on-node` (the planner found no room on the majority node within the limits),
//! `spans-nodes` (the block spans a node boundary), `unknown` (a plan that does not say).

use alloc::string::String;
use core::fmt::Write;

use super::Context;
use crate::addr::{PageSize, PhysRange};
use crate::layout::{Plan, PlanError};
use crate::memmap::{InitOutcome, ModuleLineForm, TdxLines};
use crate::readiness::pamt_nodes;
use crate::readiness::{InitEstimate, Readiness};
use crate::sysinfo::TdxLimits;

/// The version of the JSON contract, `"schema":1` at the start of every document. It changes
/// when a field changes meaning or goes away (new fields may come without it).
pub const SCHEMA: u32 = 1;

fn limits(out: &mut String, l: &TdxLimits) {
    let _ = write!(
        out,
        "{{\"max_tdmrs\":{},\"max_reserved_per_tdmr\":{},\"pamt_entry_size\":{{\"4k\":{},\"2m\":{},\"1g\":{}}},\"dynamic_pamt_bits\":",
        l.max_tdmrs(),
        l.max_reserved_per_tdmr(),
        l.pamt_entry_size(PageSize::Size4K),
        l.pamt_entry_size(PageSize::Size2M),
        l.pamt_entry_size(PageSize::Size1G),
    );
    match l.dynamic_pamt_bits() {
        Some(b) => {
            let _ = write!(out, "{b}}}");
        }
        None => out.push_str("null}"),
    }
}

fn range(out: &mut String, r: PhysRange) {
    let _ = write!(out, "{{\"base\":{},\"size\":{}}}", r.start(), r.size());
}

fn ranges(out: &mut String, rs: impl Iterator<Item = PhysRange>) {
    out.push('[');
    for (i, r) in rs.enumerate() {
        if i > 0 {
            out.push(',');
        }
        range(out, r);
    }
    out.push(']');
}

/// Writes `s` as a JSON string literal.
pub(crate) fn string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The JSON document for a successful plan.
pub fn plan(plan: &Plan, ctx: &Context<'_>) -> String {
    let mut out = String::with_capacity(256 + plan.tdmrs().len() * 512);
    let _ = write!(out, "{{\"schema\":{SCHEMA},\"status\":\"ok\",\"strategy\":");
    string(&mut out, plan.strategy().name());
    out.push_str(",\"holes\":");
    string(&mut out, plan.holes().name());
    out.push_str(",\"limits\":");
    limits(&mut out, plan.limits());
    out.push_str(",\"cmrs\":");
    ranges(
        &mut out,
        ctx.cmrs
            .listed()
            .iter()
            .map(|c| PhysRange::new_unchecked(c.base, c.base + c.size)),
    );
    out.push_str(",\"tdmrs\":[");
    for (i, t) in plan.tdmrs().iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            "{{\"base\":{},\"size\":{},\"node\":{},\"mixes_nodes\":{},",
            t.base(),
            t.size(),
            t.node(),
            t.mixes_nodes()
        );
        let (pamt_node, majority) = pamt_nodes(ctx.memory, t);
        let node =
            |n: Option<u32>| n.map_or_else(|| String::from("null"), |n| alloc::format!("{n}"));
        let _ = write!(
            out,
            "\"pamt_node\":{},\"majority_node\":{},",
            node(pamt_node),
            node(majority)
        );
        if pamt_node != majority || t.off_node_reason().is_some() {
            out.push_str("\"pamt_node_reason\":");
            string(
                &mut out,
                t.off_node_reason().map_or("unknown", |r| r.label()),
            );
            out.push(',');
        }
        out.push_str("\"reserved\":[");
        for (j, a) in t.reserved().iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            let _ = write!(
                out,
                "{{\"offset\":{},\"size\":{},\"kind\":\"{}\"}}",
                a.offset,
                a.size,
                a.kind.label()
            );
        }
        out.push_str("],\"pamt\":{");
        for (k, level) in PageSize::ALL.into_iter().enumerate() {
            if k > 0 {
                out.push(',');
            }
            let _ = write!(out, "\"{}\":", level.label());
            range(&mut out, t.pamt(level));
        }
        out.push_str("}}");
    }
    let off_node = crate::readiness::off_node(plan, ctx.memory).count();
    let _ = write!(
        out,
        "],\"pamt_bytes\":{},\"off_node_pamts\":{off_node},\"excluded\":",
        plan.pamt_bytes()
    );
    ranges(&mut out, plan.excluded().iter().copied());
    out.push_str(",\"log_warnings\":");
    log_warnings(&mut out, ctx);
    out.push('}');
    out
}

fn log_warnings(out: &mut String, ctx: &Context<'_>) {
    out.push('[');
    for (i, w) in ctx.log_warnings.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let mut msg = String::new();
        let _ = write!(msg, "{w}");
        string(out, &msg);
    }
    out.push(']');
}

/// The JSON document for a planning failure.
pub fn infeasible(strategy: &str, error: &PlanError) -> String {
    let mut out = alloc::format!("{{\"schema\":{SCHEMA},\"status\":\"infeasible\",\"strategy\":");
    string(&mut out, strategy);
    out.push_str(",\"error\":");
    let mut msg = String::new();
    let _ = write!(msg, "{error}");
    string(&mut out, &msg);
    out.push('}');
    out
}

/// [`infeasible`] with the log's warnings (`"log_warnings":[...]`), which may explain it.
pub fn infeasible_in(strategy: &str, error: &PlanError, ctx: &Context<'_>) -> String {
    let mut out = infeasible(strategy, error);
    out.pop();
    out.push_str(",\"log_warnings\":");
    log_warnings(&mut out, ctx);
    out.push('}');
    out
}

/// A compact summary of a result, for comparisons:
/// `{"status":"ok","tdmr_count":T,"reserved_areas":R,"pamt_bytes":P,"node_mixing_tdmrs":M,"off_node_pamts":O,"excluded_bytes":E}`
/// (`off_node_pamts` as the plan records it)
/// or `{"status":"infeasible","error":"..."}`.
pub(crate) fn summary(result: &Result<Plan, PlanError>) -> String {
    let mut out = String::new();
    match result {
        Ok(p) => {
            let _ = write!(
                out,
                "{{\"status\":\"ok\",\"tdmr_count\":{},\"reserved_areas\":{},\"pamt_bytes\":{},\"node_mixing_tdmrs\":{},\"off_node_pamts\":{},\"excluded_bytes\":{}}}",
                p.tdmrs().len(),
                p.reserved_area_count(),
                p.pamt_bytes(),
                p.node_mixing_tdmrs(),
                p.off_node_pamts(),
                p.excluded_bytes()
            );
        }
        Err(e) => {
            out.push_str("{\"status\":\"infeasible\",\"error\":");
            let mut msg = String::new();
            let _ = write!(msg, "{e}");
            string(&mut out, &msg);
            out.push('}');
        }
    }
    out
}

/// The TDH.SYS.TDMR.INIT estimate:
/// `{"calls":C,"cpus":N,"linux_serial_s":X,"tdmr_s":Y,"s_per_tib":2.6,"tdmr_count":T,
/// "split":{"extra_tdmrs":K,"extra_pamt_bytes":B,"saved_s":S}}` (`split` is `null` when no
/// one-CPU plan was priced). Seconds are exact renderings of whole milliseconds.
pub fn init_estimate(e: &InitEstimate) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "{{\"calls\":{},\"cpus\":{},\"linux_serial_s\":{},\"tdmr_s\":{},\"s_per_tib\":{},\"tdmr_count\":{},\"split\":",
        e.calls,
        e.cpus,
        super::seconds(e.linux_serial_ms),
        super::seconds(e.tdmr_ms),
        super::seconds(e.ms_per_tib),
        e.tdmrs
    );
    match e.split {
        Some(s) => {
            let _ = write!(
                out,
                "{{\"extra_tdmrs\":{},\"extra_pamt_bytes\":{},\"saved_s\":{}}}}}",
                s.extra_tdmrs,
                s.extra_pamt_bytes,
                super::seconds(s.saved_ms)
            );
        }
        None => out.push_str("null}"),
    }
    out
}

/// Inserts `"init_estimate":{...}` ([`init_estimate`]) before the closing brace of a JSON
/// object.
pub fn with_init_estimate(mut doc: String, e: &InitEstimate) -> String {
    if doc.ends_with('}') {
        doc.pop();
        doc.push_str(",\"init_estimate\":");
        doc.push_str(&init_estimate(e));
        doc.push('}');
    }
    doc
}

/// Inserts `"compare":{"<name>":<summary>}` before the closing brace of a JSON object.
pub fn with_comparison(mut doc: String, name: &str, other: &Result<Plan, PlanError>) -> String {
    if doc.ends_with('}') {
        doc.pop();
        doc.push_str(",\"compare\":{");
        string(&mut doc, name);
        doc.push(':');
        doc.push_str(&summary(other));
        doc.push_str("}}");
    }
    doc
}

fn opt<T: core::fmt::Display>(out: &mut String, v: Option<T>) {
    match v {
        Some(v) => {
            let _ = write!(out, "{v}");
        }
        None => out.push_str("null"),
    }
}

/// What the kernel printed about TDX ([`TdxLines`]):
///
/// ```text
/// {"module":{"major":1,"minor":5,"update":null,"internal":null,"build_num":698,
///            "build_date":20240129,"attributes":0,"vendor_id":32902,"form":"attributes",
///            "text":"1.5 build 698 (20240129)"},
///  "keyids":{"first":32,"end":64},"init":"initialized","init_code":null,
///  "dynamic_pamt":false,"extension_kb":null,"pamt_kb":2101260,
///  "linux_pamt_kb":2101260,"linux_error":null}
/// ```
///
/// `module` and `keyids` are `null` when the log has no such line; `init` is `"initialized"`,
/// `"failed"` (with the kernel's error number in `init_code`) or `null`. With the readiness
/// assessment `r`, `linux_pamt_kb` is what Linux's strategy predicts for the kernel's PAMT line
/// (in the kernel's PAMT mode: with Dynamic PAMT when it enabled it), `null` with the reason in
/// `linux_error` when it finds no layout; without `r` both are left out.
pub fn tdx_lines(t: &TdxLines, r: Option<&Readiness>) -> String {
    let mut out = String::from("{\"module\":");
    match t.module() {
        Some(m) => {
            let _ = write!(
                out,
                "{{\"major\":{},\"minor\":{},\"update\":",
                m.major, m.minor
            );
            opt(&mut out, m.update);
            out.push_str(",\"internal\":");
            opt(&mut out, m.internal);
            out.push_str(",\"build_num\":");
            opt(&mut out, m.build_num);
            out.push_str(",\"build_date\":");
            opt(&mut out, m.build_date);
            out.push_str(",\"attributes\":");
            opt(&mut out, m.attributes);
            out.push_str(",\"vendor_id\":");
            opt(&mut out, m.vendor_id);
            let form = match m.form {
                ModuleLineForm::Version => "version",
                ModuleLineForm::Attributes => "attributes",
                ModuleLineForm::Build => "build",
            };
            let _ = write!(out, ",\"form\":\"{form}\",\"text\":");
            string(&mut out, &alloc::format!("{m}"));
            out.push('}');
        }
        None => out.push_str("null"),
    }
    out.push_str(",\"keyids\":");
    match t.keyids() {
        Some(k) => {
            let _ = write!(out, "{{\"first\":{},\"end\":{}}}", k.start, k.end);
        }
        None => out.push_str("null"),
    }
    out.push_str(",\"init\":");
    match t.init() {
        Some(InitOutcome::Initialized) => out.push_str("\"initialized\",\"init_code\":null"),
        Some(InitOutcome::Failed { code }) => {
            let _ = write!(out, "\"failed\",\"init_code\":{code}");
        }
        None => out.push_str("null,\"init_code\":null"),
    }
    let _ = write!(
        out,
        ",\"dynamic_pamt\":{},\"extension_kb\":",
        t.dynamic_pamt()
    );
    opt(&mut out, t.extension_kb());
    out.push_str(",\"pamt_kb\":");
    opt(&mut out, t.pamt_kb());
    if let Some(r) = r {
        out.push_str(",\"linux_pamt_kb\":");
        match super::linux_prediction(t, r) {
            Ok(bytes) => {
                let _ = write!(out, "{},\"linux_error\":null", bytes / 1024);
            }
            Err(e) => {
                out.push_str("null,\"linux_error\":");
                match e {
                    Some(e) => string(&mut out, &alloc::format!("{e}")),
                    None => string(&mut out, "no layout"),
                }
            }
        }
    }
    out.push('}');
    out
}

/// Inserts `"tdx_lines":{...}` ([`tdx_lines`]) before the closing brace of a JSON object.
pub fn with_tdx_lines(mut doc: String, t: &TdxLines, r: Option<&Readiness>) -> String {
    if doc.ends_with('}') {
        doc.pop();
        doc.push_str(",\"tdx_lines\":");
        doc.push_str(&tdx_lines(t, r));
        doc.push('}');
    }
    doc
}
