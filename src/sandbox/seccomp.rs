//! The sandbox's seccomp filter: system calls that rendering never needs and
//! that widen the kernel's attack surface fail with EPERM. It backs up what
//! the namespaces and dropped capabilities already refuse (`unshare`,
//! `mount`), and refuses what they do not (`io_uring`, `keyctl`, TIOCSTI).

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::os::fd::{FromRawFd, OwnedFd};

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

/// Refused outright.
const DENIED: &[libc::c_long] = &[
    // New namespaces, mounts and roots.
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_open_tree,
    libc::SYS_move_mount,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_mount_setattr,
    // The kernel keyring.
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    // io_uring and eBPF: large, frequently exploited interfaces.
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_bpf,
    libc::SYS_userfaultfd,
    libc::SYS_perf_event_open,
    // Looking into other processes.
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_kcmp,
    // Files by handle, bypassing paths.
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    // The machine itself.
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_reboot,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_acct,
    libc::SYS_syslog,
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_adjtimex,
    libc::SYS_quotactl,
    libc::SYS_fanotify_init,
    libc::SYS_personality,
];

/// ioctl requests refused: faking terminal input (TIOCSTI) and the Linux
/// console's own commands (TIOCLINUX).
const DENIED_IOCTLS: &[u64] = &[0x5412, 0x541C];

fn program() -> Result<BpfProgram, seccompiler::Error> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        DENIED.iter().map(|&nr| (nr, vec![])).collect();
    let ioctls = DENIED_IOCTLS
        .iter()
        .map(|&request| {
            SeccompRule::new(vec![SeccompCondition::new(
                1,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::Eq,
                request,
            )?])
        })
        .collect::<Result<Vec<_>, _>>()?;
    rules.insert(libc::SYS_ioctl, ioctls);
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        std::env::consts::ARCH.try_into()?,
    )?;
    filter.try_into().map_err(seccompiler::Error::Backend)
}

/// The compiled filter as bytes, as bubblewrap's `--seccomp FD` reads it.
pub fn bytes() -> io::Result<&'static [u8]> {
    static BYTES: std::sync::OnceLock<Result<Vec<u8>, String>> = std::sync::OnceLock::new();
    let compiled = BYTES.get_or_init(|| {
        let prog = program().map_err(|e| e.to_string())?;
        let mut out = Vec::with_capacity(prog.len() * 8);
        for ins in prog {
            out.extend_from_slice(&ins.code.to_ne_bytes());
            out.push(ins.jt);
            out.push(ins.jf);
            out.extend_from_slice(&ins.k.to_ne_bytes());
        }
        Ok(out)
    });
    compiled
        .as_deref()
        .map_err(|e| io::Error::other(format!("cannot compile the seccomp filter: {e}")))
}

/// A pipe whose read end yields the filter: bubblewrap reads it to the end.
/// The read end is close-on-exec here; the child clears that flag for itself.
pub fn pipe() -> io::Result<OwnedFd> {
    let data = bytes()?;
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills in two new descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors are fresh and owned here.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // The filter is a few hundred bytes, far below a pipe's buffer.
    std::fs::File::from(write).write_all(data)?;
    Ok(read)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_filter_compiles_to_whole_instructions() {
        let b = super::bytes().unwrap();
        assert!(!b.is_empty());
        assert_eq!(b.len() % 8, 0);
    }
}
