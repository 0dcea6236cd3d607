//! `tdmr check LAYOUT`: a layout someone else built, checked exactly as the TDX module's
//! TDH.SYS.CONFIG checks it (`tdx::validate`, the module's order and 64-bit statuses) against
//! the CMRs of a kernel log (or this machine) and the module's limits, then against the host's
//! own rule that every byte of TDX memory is in a TDMR or a PAMT. The answer names the TDMR
//! and the area the module complains about.

use serde_json::{Value, json};
use tdmr::addr::{Bytes, PageSize, PhysRange};
use tdmr::memmap::Cmr;
use tdmr::sysinfo::TdxLimits;
use tdmr::tdx::abi::TdmrInfo;
use tdmr::tdx::status::{
    Status, TDX_INVALID_PAMT, TDX_INVALID_RESERVED_IN_TDMR, TDX_INVALID_TDMR,
    TDX_NON_ORDERED_RESERVED_IN_TDMR, TDX_NON_ORDERED_TDMR, TDX_OPERAND_INVALID,
    TDX_PAMT_OUTSIDE_CMRS, TDX_PAMT_OVERLAP, TDX_TDMR_OUTSIDE_CMRS,
};
use tdmr::tdx::validate::{self, ConfigEnv};

use crate::args::{InputArgs, LimitArgs, TextOrJson};
use crate::input::{self, EMR};
use crate::keyids;
use crate::layout_file::{self, LayoutFormat};
use crate::module;
use crate::out;
use crate::{CliError, Output};

/// `tdmr check` arguments.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  tdmr plan dmesg.txt --format json > plan.json && tdmr check plan.json --log dmesg.txt\n  xxd -p tdmr_info.bin | tdmr check - --log dmesg.txt\n\nExit status: 0 valid, 1 refused (the module's status naming the TDMR and area; or over --max-reserved; or TDX memory left uncovered), 2 bad input (the offending value named)."
)]
pub struct Args {
    /// The layout: a JSON plan (`tdmr plan --format json`, or any tool's in the same fields)
    /// or a hex dump of TDMR_INFO entries (512 bytes each, `xxd -p` or `xxd`); `-` for
    /// standard input.
    #[arg(value_name = "LAYOUT")]
    pub layout: String,

    /// The kernel log whose CMRs and memory the layout is checked against (its KeyID range
    /// and `Enable Dynamic PAMT` count too). Without it: this machine.
    #[arg(long, value_name = "LOG")]
    pub log: Option<String>,

    /// Read "this machine" from the files under DIR instead of / (see `tdmr plan --help`).
    #[arg(long, value_name = "DIR", conflicts_with = "log")]
    pub machine_root: Option<std::path::PathBuf>,

    /// How LAYOUT is written.
    #[arg(long, value_enum, default_value_t = LayoutFormat::Auto)]
    pub layout_format: LayoutFormat,

    #[command(flatten)]
    pub limits: LimitArgs,

    /// Output format.
    #[arg(long, value_enum, default_value_t = TextOrJson::Text)]
    pub format: TextOrJson,
}

fn level_of(b: u8) -> Option<PageSize> {
    match b {
        0 => Some(PageSize::Size4K),
        1 => Some(PageSize::Size2M),
        2 => Some(PageSize::Size1G),
        _ => None,
    }
}

fn range(base: u64, size: u64) -> String {
    match base.checked_add(size) {
        Some(end) => format!("[{base:#x}, {end:#x})"),
        None => format!("[{base:#x}, +{size:#x}: past 2^64)"),
    }
}

fn range_json(base: u64, size: u64) -> Value {
    json!({"base": base, "size": size})
}

/// What the module's status says about the layout: a sentence, and the TDMR, area and other
/// TDMR it names (JSON).
fn explain(s: Status, infos: &[TdmrInfo], limits: &TdxLimits) -> (String, Value, Value, Value) {
    let [tdmr, b1, other, _] = s.info_bytes();
    let (i, j) = (usize::from(tdmr), usize::from(other));
    let null = Value::Null;
    let Some(t) = infos.get(i).filter(|_| s.has_tdmr_info()) else {
        if s.code() == TDX_OPERAND_INVALID {
            return (
                format!(
                    "{} TDMRs: the module takes 1 to {} (MAX_TDMRS)",
                    infos.len(),
                    limits.max_tdmrs()
                ),
                null.clone(),
                null.clone(),
                null,
            );
        }
        return (String::new(), null.clone(), null.clone(), null);
    };
    let tr = range(t.base, t.size);
    let tdmr_area = json!({"kind": "tdmr", "range": range_json(t.base, t.size)});
    let pamt = |level: PageSize| {
        let (b, z) = t.pamt(level);
        (
            format!("PAMT {} {}", level.label(), range(b, z)),
            json!({"kind": "pamt", "level": level.label(), "range": range_json(b, z)}),
        )
    };
    let reserved = |k: usize| {
        let r = t.reserved.get(k).copied().unwrap_or_default();
        (
            format!(
                "reserved area {k} (offset {:#x}, size {:#x}: {})",
                r.offset,
                r.size,
                range(t.base.wrapping_add(r.offset), r.size)
            ),
            json!({"kind": "reserved", "index": k, "offset": r.offset, "size": r.size}),
        )
    };
    let (sentence, area, other) = match s.code() {
        TDX_INVALID_TDMR => (
            format!(
                "TDMR {i} {tr}: base and size must be 1 GiB aligned, non-zero, and within the physical address width and clear of the KeyID bits"
            ),
            tdmr_area,
            null,
        ),
        TDX_NON_ORDERED_TDMR => {
            let prev = i.checked_sub(1).and_then(|p| infos.get(p));
            (
                format!(
                    "TDMR {i} {tr} starts before the end of TDMR {} {}",
                    i.saturating_sub(1),
                    prev.map_or_else(String::new, |p| range(p.base, p.size))
                ),
                tdmr_area,
                json!(i.saturating_sub(1)),
            )
        }
        TDX_INVALID_RESERVED_IN_TDMR => {
            let (text, area) = reserved(usize::from(b1));
            (
                format!("TDMR {i} {tr}: {text} must be 4 KiB aligned and end inside the TDMR"),
                area,
                null,
            )
        }
        TDX_NON_ORDERED_RESERVED_IN_TDMR => {
            let (text, area) = reserved(usize::from(b1));
            (
                format!(
                    "TDMR {i} {tr}: {text} is out of order (it starts before the end of the area before it, or follows an empty slot)"
                ),
                area,
                null,
            )
        }
        TDX_INVALID_PAMT => match level_of(b1) {
            Some(level) => {
                let (text, area) = pamt(level);
                let pages = t.size / level.bytes();
                let need = if limits.dynamic_pamt() && level == PageSize::Size4K {
                    pages / 8
                } else {
                    pages.saturating_mul(limits.pamt_entry_size(level))
                };
                (
                    format!(
                        "TDMR {i} {tr}: {text} must be 4 KiB aligned, within the physical address width, and at least {} ({need} bytes)",
                        Bytes(need)
                    ),
                    area,
                    null,
                )
            }
            None => (format!("TDMR {i} {tr}: a PAMT is invalid"), tdmr_area, null),
        },
        TDX_PAMT_OVERLAP => {
            let (text, area) =
                level_of(b1).map_or_else(|| (String::from("a PAMT"), tdmr_area.clone()), pamt);
            let o = infos
                .get(j)
                .map_or_else(String::new, |o| format!(" {}", range(o.base, o.size)));
            let whose = if i == j {
                "another PAMT of its own TDMR, or its non-reserved memory".to_string()
            } else {
                format!("a PAMT or the non-reserved memory of TDMR {j}{o}")
            };
            (
                format!("TDMR {i} {tr}: {text} overlaps {whose}"),
                area,
                json!(j),
            )
        }
        TDX_PAMT_OUTSIDE_CMRS => {
            let (text, area) =
                level_of(b1).map_or_else(|| (String::from("a PAMT"), tdmr_area.clone()), pamt);
            (
                format!(
                    "TDMR {i} {tr}: {text} is not inside the CMRs (one chain of abutting CMRs)"
                ),
                area,
                null,
            )
        }
        TDX_TDMR_OUTSIDE_CMRS => (
            format!("TDMR {i} {tr}: memory outside its reserved areas is not inside the CMRs"),
            tdmr_area,
            null,
        ),
        _ => (String::new(), tdmr_area, null),
    };
    (sentence, json!(i), area, other)
}

fn limits_json(l: &TdxLimits) -> Value {
    json!({
        "max_tdmrs": l.max_tdmrs(),
        "max_reserved_per_tdmr": l.max_reserved_per_tdmr(),
        "pamt_entry_size": {
            "4k": l.pamt_entry_size(PageSize::Size4K),
            "2m": l.pamt_entry_size(PageSize::Size2M),
            "1g": l.pamt_entry_size(PageSize::Size1G),
        },
        "dynamic_pamt_bits": l.dynamic_pamt_bits(),
    })
}

/// Runs `tdmr check`.
pub fn run(a: &Args) -> Result<Output, CliError> {
    let mut limits = a.limits.limits()?;
    let layout_text = input::read_text(&a.layout)?;
    let layout_name = if a.layout == "-" {
        "standard input"
    } else {
        &a.layout
    };
    let layout = layout_file::read(&layout_text, a.layout_format, layout_name)?;
    let input_args = InputArgs {
        log: a.log.clone(),
        demo: false,
        machine_root: a.machine_root.clone(),
    };
    let mut loaded = input::load(&input_args, EMR)?;
    let tdx = *loaded.parsed.tdx_lines();
    if tdx.dynamic_pamt() {
        limits = module::with_dynamic_pamt(
            limits,
            &mut loaded,
            "the kernel enabled Dynamic PAMT (`Enable Dynamic PAMT`): the module checks PAMT_4K as a bitmap",
        )?;
    }
    let version = module::named_version(&mut loaded, "checked as");
    let cmrs: &[Cmr] = loaded.parsed.cmrs().listed();
    let mut env = ConfigEnv::from_limits(&limits, cmrs);
    if let Some(version) = version {
        env = env.with_module_version(version);
    }
    // The parser takes only ranges PrivateKeyIds takes.
    let keyids = match tdx.keyids().map(keyids::from_range) {
        Some(Ok(k)) => Some(k),
        Some(Err(e)) => return Err(CliError::new(format!("the log's KeyID range: {e}"))),
        None => None,
    };
    if let Some((private, bits)) = keyids {
        env = env.with_keyids(bits, private);
    }

    // 1. The limit the kernel honours before the module sees the layout.
    let over_reserved = layout
        .infos
        .iter()
        .enumerate()
        .map(|(i, t)| (i, t.reserved.iter().filter(|r| r.size != 0).count()))
        .find(|&(_, n)| n > limits.max_reserved_per_tdmr());
    // 2. TDH.SYS.CONFIG.
    let module = validate::sys_config(&layout.infos, &env);
    // 3. The host's coverage rule.
    let memory: Vec<PhysRange> = loaded
        .parsed
        .memory()
        .regions()
        .iter()
        .map(|r| r.range())
        .collect();
    let coverage = module
        .is_ok()
        .then(|| validate::covers_memory(&layout.infos, memory.iter().copied(), &layout.excluded));

    let refused_by = if over_reserved.is_some() {
        Some("limits")
    } else if module.is_err() {
        Some("module")
    } else if matches!(coverage, Some(Err(_))) {
        Some("coverage")
    } else {
        None
    };
    let (sentence, tdmr, area, other) = match module {
        Err(s) => explain(s, &layout.infos, &limits),
        Ok(()) => (String::new(), Value::Null, Value::Null, Value::Null),
    };

    let code = u8::from(refused_by.is_some());
    let text = match a.format {
        TextOrJson::Json => {
            let mut doc = out::head(&loaded);
            doc.insert(
                "layout".into(),
                json!({"path": layout_name, "format": layout.format, "tdmr_count": layout.infos.len()}),
            );
            doc.insert(
                "status".into(),
                json!(if code == 0 { "valid" } else { "refused" }),
            );
            doc.insert("refused_by".into(), json!(refused_by));
            doc.insert("limits".into(), limits_json(&limits));
            doc.insert(
                "cmrs".into(),
                cmrs.iter().map(|c| range_json(c.base, c.size)).collect(),
            );
            doc.insert(
                "keyids".into(),
                match tdx.keyids() {
                    Some(k) => json!({"first": k.start, "end": k.end}),
                    None => Value::Null,
                },
            );
            doc.insert(
                "module_status".into(),
                match module {
                    Ok(()) => out::status(Status::SUCCESS),
                    Err(s) => out::status(s),
                },
            );
            doc.insert("tdmr".into(), tdmr);
            doc.insert("area".into(), area);
            doc.insert("other_tdmr".into(), other);
            doc.insert(
                "explanation".into(),
                if sentence.is_empty() {
                    Value::Null
                } else {
                    json!(sentence)
                },
            );
            doc.insert(
                "uncovered".into(),
                match &coverage {
                    Some(Err(u)) => range_json(u.range.start(), u.range.size()),
                    _ => Value::Null,
                },
            );
            doc.insert(
                "reserved_limit".into(),
                match over_reserved {
                    Some((i, n)) => {
                        json!({"tdmr": i, "areas": n, "limit": limits.max_reserved_per_tdmr()})
                    }
                    None => Value::Null,
                },
            );
            out::line(doc)
        }
        TextOrJson::Text => {
            let mut t = input::describe(&loaded);
            t.push_str(&format!(
                "layout: {layout_name} ({}, {} TDMR_INFO entries)\n",
                if layout.format == "json" {
                    "JSON plan"
                } else {
                    "hex dump"
                },
                layout.infos.len()
            ));
            t.push_str(&format!(
                "module limits: {} TDMRs, {} reserved areas per TDMR, PAMT entries {}/{}/{} bytes{}\n",
                limits.max_tdmrs(),
                limits.max_reserved_per_tdmr(),
                limits.pamt_entry_size(PageSize::Size4K),
                limits.pamt_entry_size(PageSize::Size2M),
                limits.pamt_entry_size(PageSize::Size1G),
                if limits.dynamic_pamt() {
                    ", Dynamic PAMT"
                } else {
                    ""
                }
            ));
            t.push_str(&format!("CMRs: {} listed", cmrs.len()));
            if let Some((private, bits)) = &keyids {
                t.push_str(&format!("; private KeyIDs {private} ({bits} KeyID bits)"));
            }
            t.push('\n');
            if let Some((i, n)) = over_reserved {
                t.push_str(&format!(
                    "limits: TDMR {i} uses {n} reserved areas, the module allows {} (MAX_RESERVED_PER_TDMR)\n",
                    limits.max_reserved_per_tdmr()
                ));
            }
            match module {
                Ok(()) => {
                    t.push_str("TDH.SYS.CONFIG: TDX_SUCCESS: the module accepts this layout\n")
                }
                Err(s) => {
                    t.push_str(&format!("TDH.SYS.CONFIG: {s}\n"));
                    if !sentence.is_empty() {
                        t.push_str(&format!("  {sentence}\n"));
                    }
                }
            }
            match &coverage {
                Some(Ok(())) => t.push_str(
                    "coverage: every byte of TDX memory is in a TDMR outside its reserved areas, or a PAMT\n",
                ),
                Some(Err(u)) => t.push_str(&format!("coverage: {u}\n")),
                None => {}
            }
            t.push_str(&format!(
                "verdict: {}\n",
                match refused_by {
                    None => "valid",
                    Some("module") => "refused by the module",
                    Some("limits") => "refused: over the module's limits",
                    Some(_) => "refused: TDX memory left out of the layout",
                }
            ));
            t
        }
    };
    Ok(Output { text, code })
}
