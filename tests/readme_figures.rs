//! Every figure the README's "On real machines" section states is what the library computes
//! today: the table (Linux mainline's verdict and ours, per fixture) and the Dynamic PAMT
//! sentence below it. The test reads the README, so editing a number there without the code
//! agreeing fails here.

use std::path::Path;

use tdmr::layout::{Plan, PlanError, Planner, Strategy};
use tdmr::memmap::{ParsedLog, parse_kernel_log};
use tdmr::sysinfo::TdxLimits;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> ParsedLog {
    let path = root().join("tests/fixtures").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse_kernel_log(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The section's text, from its heading to the next one.
fn section<'a>(readme: &'a str, heading: &str) -> &'a str {
    let start = readme
        .find(heading)
        .unwrap_or_else(|| panic!("README has no `{heading}`"));
    let body = &readme[start + heading.len()..];
    &body[..body.find("\n## ").unwrap_or(body.len())]
}

/// What a cell says: `N TDMRs, M areas, K KB`, or `fails: MESSAGE`.
fn describe(result: &Result<Plan, PlanError>) -> String {
    match result {
        Ok(p) => format!(
            "{} TDMRs, {} areas, {} KB",
            p.tdmrs().len(),
            p.reserved_area_count(),
            p.pamt_bytes() / 1024
        ),
        Err(e) => format!("fails: {e}"),
    }
}

/// A failure cell may abbreviate the message (the README drops the limit in parentheses).
fn agrees(cell: &str, computed: &str) -> bool {
    if let Some(msg) = cell.strip_prefix("fails: ") {
        computed.starts_with("fails: ") && computed["fails: ".len()..].starts_with(msg)
    } else {
        cell == computed
    }
}

#[test]
fn the_real_machines_table_is_what_the_planners_compute() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let text = section(&readme, "## On real machines");
    let mut rows = 0;
    for line in text.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let file = cells[1]
            .split('`')
            .nth(1)
            .expect("a fixture name in backticks");
        let input = fixture(file);
        let (memory, cmrs) = (input.memory(), input.cmrs());
        let linux = describe(
            &Planner::new()
                .with_strategy(Strategy::Linux)
                .plan(memory, cmrs),
        );
        let ours = describe(&Planner::new().plan(memory, cmrs));
        assert!(
            agrees(cells[2], &linux),
            "{file}: README says Linux `{}`, the Linux strategy gives `{linux}`",
            cells[2]
        );
        assert!(
            agrees(cells[3], &ours),
            "{file}: README says ours `{}`, the default planner gives `{ours}`",
            cells[3]
        );
        rows += 1;
    }
    assert_eq!(rows, 5, "the table's rows were not all read");
}

#[test]
fn the_dynamic_pamt_sentence_is_what_the_planner_computes() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let text = section(&readme, "## On real machines");
    let sentence = text
        .lines()
        .find(|l| l.starts_with("With Dynamic PAMT the 1 TiB machine needs "))
        .expect("the Dynamic PAMT sentence");
    let numbers: Vec<u64> = sentence
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .filter(|&n| n > 1000)
        .collect();
    let [dynamic_kb, static_kb] = numbers[..] else {
        panic!("expected two KB figures in: {sentence}");
    };
    let input = fixture("spr-1t.log");
    let (memory, cmrs) = (input.memory(), input.cmrs());
    let dpamt = TdxLimits::default().with_dynamic_pamt(1).unwrap();
    let with = Planner::new()
        .with_limits(dpamt)
        .plan(memory, cmrs)
        .unwrap();
    let without = Planner::new().plan(memory, cmrs).unwrap();
    assert_eq!(with.pamt_bytes() / 1024, dynamic_kb);
    assert_eq!(without.pamt_bytes() / 1024, static_kb);
}
