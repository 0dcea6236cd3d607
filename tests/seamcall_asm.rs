//! The real backend really emits SEAMCALL: a child process executes it at CPL 3, where the
//! instruction faults, and the parent observes the signal the fault becomes.
//!
//! Which fault (SDM, SEAMCALL): outside VMX operation the instruction raises #UD; in VMX
//! non-root operation (a guest) it exits to the hypervisor, which reflects #UD into the guest
//! (KVM does); in VMX root operation at CPL > 0 it raises #GP(0). Linux turns #UD into SIGILL
//! and #GP into SIGSEGV. A process can only be in VMX root operation on bare metal with a
//! hypervisor that has executed VMXON, so on a guest or a CPU without VMX the only correct
//! outcome is SIGILL.
#![cfg(all(target_arch = "x86_64", target_os = "linux"))]

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use tdmr::seamcall::asm::SeamcallInstruction;
use tdmr::seamcall::{Regs, Seamcall, leaf};

const CHILD_ENV: &str = "TDMR_SEAMCALL_CHILD";
const REACHED: &str = "child: issuing SEAMCALL";
const RETURNED: &str = "child: SEAMCALL returned";
const SIGILL: i32 = 4;
const SIGSEGV: i32 = 11;

fn cpu_flags() -> Vec<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").expect("read /proc/cpuinfo");
    info.lines()
        .find(|l| l.starts_with("flags"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, f)| f.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

fn child() -> ! {
    // SAFETY: deliberately not met. This process runs at CPL 3, so the instruction faults
    // before it can touch any state; the fault's signal ends the process, which is what the
    // parent checks. Nothing runs after a fault.
    let insn = unsafe { SeamcallInstruction::new() };
    eprintln!("{REACHED}");
    std::io::stderr().flush().ok();
    let out = insn.seamcall(leaf::TDH_SYS_LP_INIT, &Regs::ZERO);
    eprintln!("{RETURNED}: {}", out.status);
    std::process::exit(0);
}

#[test]
fn seamcall_faults_at_cpl3() {
    if std::env::var_os(CHILD_ENV).is_some() {
        child();
    }
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "seamcall_faults_at_cpl3",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .output()
        .expect("spawn child");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(REACHED),
        "child never reached the instruction: {stderr}"
    );
    assert!(
        !stderr.contains(RETURNED),
        "SEAMCALL returned at CPL 3: {stderr}"
    );
    let signal = out.status.signal();

    let flags = cpu_flags();
    let guest_or_no_vmx =
        flags.iter().any(|f| f == "hypervisor") || !flags.iter().any(|f| f == "vmx");
    if guest_or_no_vmx {
        assert_eq!(
            signal,
            Some(SIGILL),
            "expected #UD (SIGILL), got {:?}",
            out.status
        );
    } else {
        // Bare metal with VMX: #GP if a hypervisor has this CPU in VMX operation, else #UD.
        assert!(
            matches!(signal, Some(SIGILL | SIGSEGV)),
            "expected #UD (SIGILL) or #GP (SIGSEGV), got {:?}",
            out.status
        );
    }
}
