//! `--help` a newcomer can follow: every subcommand says what it does and lists every flag the
//! old examples took (`plan`, `init_mock`, `hotplug`), with what each does; `--version`.

mod common;

use common::{run, stdout};

#[test]
fn every_subcommand_lists_its_flags() {
    let o = run(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    let top = stdout(&o);
    for s in [
        "plan",
        "check",
        "bringup",
        "hotplug",
        "Examples:",
        "Exit status",
    ] {
        assert!(top.contains(s), "`{s}` missing from tdmr --help:\n{top}");
    }
    let flags: [(&str, &[&str]); 4] = [
        (
            "plan",
            &[
                "--strategy",
                "--holes",
                "--max-tdmrs",
                "--max-reserved",
                "--pamt-entry-size",
                "--dpamt",
                "--allow-exclusions",
                "--compare",
                "--cpus",
                "--format",
                "--verbose",
                "--demo",
                "--machine-root",
                "[LOG]",
            ],
        ),
        (
            "bringup",
            &[
                "--format",
                "--cpus",
                "--packages",
                "--strategy",
                "--holes",
                "--dynamic-pamt",
                "--inject",
                "--seed",
                "--demo",
                "[LOG]",
            ],
        ),
        (
            "hotplug",
            &["--threads", "--ops", "--seed", "--demo", "[LOG]"],
        ),
        (
            "check",
            &[
                "<LAYOUT>",
                "--log",
                "--layout-format",
                "--max-tdmrs",
                "--max-reserved",
                "--pamt-entry-size",
                "--dpamt",
                "--format",
            ],
        ),
    ];
    for (sub, want) in flags {
        let o = run(&[sub, "--help"]);
        assert_eq!(o.status.code(), Some(0), "{sub}");
        let help = stdout(&o);
        for flag in want {
            assert!(
                help.contains(flag),
                "`{flag}` missing from tdmr {sub} --help:\n{help}"
            );
        }
        // Every option is explained: no flag line without text after it.
        assert!(help.lines().count() > want.len() * 2, "{help}");
    }
    let o = run(&["--version"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).starts_with("tdmr "), "{}", stdout(&o));
    // An unknown subcommand or flag is a usage error, exit 2.
    assert_eq!(run(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(run(&["plan", "--frobnicate"]).status.code(), Some(2));
}
