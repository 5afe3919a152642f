//! The sandbox every ffmpeg and ffprobe run on user data goes through (docs/architecture.md §6).
//!
//! Users are untrusted and ffmpeg is large: the encoder-string validator is the first wall,
//! this is the second, so that a string it wrongly accepts still cannot touch anything but
//! the task's own files. A [`Jail`] says what one run may touch; [`Jail::command`] gives the
//! `Command` to run it with:
//!
//! - a clean environment (`PATH`, `LANG` only: the unit's secrets never reach ffmpeg), the
//!   task's own directory as working directory, and rlimits: core 0, CPU seconds, file size
//!   (SIGXFSZ past it);
//! - with [`SandboxMode::On`], in the child before exec: the capabilities dropped (empty
//!   bounding and ambient sets, securebits locked, empty capset: as root, too, ffmpeg holds
//!   no privilege), `no_new_privs`, a **Landlock** domain (read: the program, the shared
//!   libraries, the ld.so cache, fonts and fontconfig, `/dev/null`, `/dev/urandom`, the CPU
//!   list in `/sys`, and the run's own input; write: the task directory only; no TCP bind or
//!   connect; no signals or abstract sockets out of the domain) and a **seccomp-bpf** filter
//!   (`socket`, io_uring, ptrace and `process_vm_*`, mount and namespace calls, `bpf`,
//!   keyrings, modules, reboot and the like fail with EPERM, x32 numbers included; `clone3`
//!   answers ENOSYS so libc falls back to `clone`, whose namespace flags are refused).
//!
//! The ruleset and the BPF program are built in the parent; the child only makes plain
//! syscalls (setrlimit, prctl, capset, landlock_restrict_self, seccomp), which are safe
//! between fork and exec. Landlock does not hide a file's existence from `stat`, and needs
//! ABI 6 (Linux 6.12) for its TCP rules and scopes; below that the seccomp filter still
//! refuses sockets. [`check`] probes the kernel once at start: with the sandbox on, a kernel
//! without Landlock or seccomp makes the binary refuse to start (`OSCIED_SANDBOX=off` runs
//! ffmpeg unconfined, with a loud warning; the environment, working directory and rlimits
//! stay).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use clap::ValueEnum;
use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, PathBeneath, PathFd,
    Ruleset, RulesetAttr, RulesetCreatedAttr, Scope,
};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// The Landlock ABI whose rights the rules are written for (the crate degrades them on older
/// kernels; a newer kernel gets no surprise rights).
const TARGET_ABI: ABI = ABI::V6;

/// What the child sees as its environment.
const CHILD_PATH: &str = "/usr/local/bin:/usr/bin:/bin";
const CHILD_LANG: &str = "C.UTF-8";

/// System files a dynamically linked ffmpeg needs, read-only (missing ones are skipped).
/// Found by running ffmpeg 5.1 (Debian) under strace and then under this sandbox.
const SYSTEM_READ: &[&str] = &[
    "/usr/lib",
    "/usr/lib64",
    "/usr/local/lib",
    "/etc/ld.so.cache",
    "/etc/fonts",
    "/usr/share/fonts",
    "/usr/share/fontconfig",
    "/usr/local/share/fonts",
    "/var/cache/fontconfig",
    "/dev/urandom",
    // glibc's CPU count (thread pools size themselves with it).
    "/sys/devices/system/cpu",
];

/// Whether ffmpeg and ffprobe run confined (`OSCIED_SANDBOX`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum SandboxMode {
    /// Landlock, seccomp and no capabilities (the default).
    #[default]
    On,
    /// Unconfined: for kernels without Landlock or seccomp, and only with trusted users.
    Off,
}

impl fmt::Display for SandboxMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SandboxMode::On => "on",
            SandboxMode::Off => "off",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(
        "the kernel has no Landlock ({0}), so ffmpeg and ffprobe cannot be confined to their files; \
         enable Landlock (lsm=...,landlock) or set OSCIED_SANDBOX=off to run them unconfined \
         (only with trusted users)"
    )]
    NoLandlock(String),
    #[error(
        "the kernel has no seccomp filters ({0}), so ffmpeg and ffprobe cannot be kept off the \
         network; set OSCIED_SANDBOX=off to run them unconfined (only with trusted users)"
    )]
    NoSeccomp(String),
    #[error("{0} is not on the PATH")]
    NotFound(String),
    #[error("the sandbox could not be set up: {0}")]
    Setup(String),
}

/// What the start check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Support {
    /// The kernel's Landlock ABI version (0 when the sandbox is off and it was not asked).
    pub landlock_abi: i32,
}

/// The start check (once per process, not per task): with the sandbox on, probe Landlock and
/// seccomp for real and build the filter once; with it off, warn loudly.
pub fn check(mode: SandboxMode) -> Result<Support, SandboxError> {
    if mode == SandboxMode::Off {
        tracing::warn!(
            "OSCIED_SANDBOX=off: ffmpeg and ffprobe run UNCONFINED (no Landlock, no seccomp, \
             capabilities kept): an encoder string the validator wrongly accepts can read and \
             write any file this process can and open network connections. Use it only with \
             trusted users."
        );
        return Ok(Support { landlock_abi: 0 });
    }
    let abi = landlock_abi().map_err(|e| SandboxError::NoLandlock(e.to_string()))?;
    if abi < 1 {
        return Err(SandboxError::NoLandlock("ABI version 0".into()));
    }
    seccomp_available().map_err(|e| SandboxError::NoSeccomp(e.to_string()))?;
    filter()?;
    // A ruleset with every rule kind, as a run builds it.
    ruleset(&[], None)?;
    if abi < 6 {
        tracing::warn!(
            landlock_abi = abi,
            "the kernel's Landlock is older than ABI 6: ffmpeg's TCP and signal scoping rely on \
             seccomp alone"
        );
    }
    tracing::info!(
        landlock_abi = abi,
        "sandbox on: Landlock, seccomp, no capabilities"
    );
    Ok(Support { landlock_abi: abi })
}

/// `landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)`.
fn landlock_abi() -> io::Result<i32> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with a NULL attribute and this flag the call only returns the ABI version.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if v < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(v as i32)
}

/// `seccomp(SECCOMP_GET_ACTION_AVAIL, 0, &SECCOMP_RET_ERRNO)`: filter mode and the action
/// the filter uses both exist.
fn seccomp_available() -> io::Result<()> {
    let action: u32 = libc::SECCOMP_RET_ERRNO;
    // SAFETY: the kernel reads one u32 from the pointer.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_GET_ACTION_AVAIL,
            0u32,
            &action as *const u32,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// What one ffmpeg or ffprobe run may touch, and its limits.
#[derive(Debug, Clone)]
pub struct Jail {
    program: PathBuf,
    reads: Vec<PathBuf>,
    work_dir: Option<PathBuf>,
    cwd: Option<PathBuf>,
    cpu_secs: Option<u64>,
    max_file_bytes: Option<u64>,
    niceness: Option<i32>,
}

impl Jail {
    /// A run of `program` (a name found on this process's `PATH`, or a path), reading nothing
    /// of the user's and writing nothing yet.
    pub fn new(program: &str) -> Result<Jail, SandboxError> {
        let program =
            find_program(program).ok_or_else(|| SandboxError::NotFound(program.to_owned()))?;
        Ok(Jail {
            program,
            reads: Vec::new(),
            work_dir: None,
            cwd: None,
            cpu_secs: None,
            max_file_bytes: None,
            niceness: None,
        })
    }

    /// May read `path` (a file, or a directory and everything under it).
    pub fn read(mut self, path: &Path) -> Result<Jail, SandboxError> {
        self.reads.push(absolute(path)?);
        Ok(self)
    }

    /// May create, write and remove anything under `dir`, which is also its working
    /// directory.
    pub fn work_dir(mut self, dir: &Path) -> Result<Jail, SandboxError> {
        self.work_dir = Some(absolute(dir)?);
        Ok(self)
    }

    /// The working directory of a run that writes nothing (the default is `/`).
    pub fn cwd(mut self, dir: &Path) -> Result<Jail, SandboxError> {
        self.cwd = Some(absolute(dir)?);
        Ok(self)
    }

    /// CPU seconds (SIGXCPU at the limit, SIGKILL 5 s later).
    pub fn cpu_secs(mut self, secs: u64) -> Jail {
        self.cpu_secs = Some(secs.max(1));
        self
    }

    /// The largest file the run may write (SIGXFSZ past it).
    pub fn max_file_bytes(mut self, bytes: u64) -> Jail {
        self.max_file_bytes = Some(bytes);
        self
    }

    /// Run at this niceness (0 to 19; higher yields more): work nobody waits for, such as a
    /// thumbnail, gives the CPU to the encoders on a shared host.
    pub fn niceness(mut self, niceness: i32) -> Jail {
        self.niceness = Some(niceness.clamp(0, 19));
        self
    }

    pub fn program(&self) -> &Path {
        &self.program
    }

    /// The command for this run: environment, working directory and limits set, and with
    /// the sandbox on the confinement applied in the child before exec. Add the arguments,
    /// stdio and further `pre_exec` steps to it.
    pub fn command(&self, mode: SandboxMode) -> Result<tokio::process::Command, SandboxError> {
        let mut command = std::process::Command::new(&self.program);
        command
            .env_clear()
            .env("PATH", CHILD_PATH)
            .env("LANG", CHILD_LANG);
        let cwd = self
            .work_dir
            .as_deref()
            .or(self.cwd.as_deref())
            .unwrap_or(Path::new("/"));
        command.current_dir(cwd);
        let limits = Limits::new(self.cpu_secs, self.max_file_bytes, self.niceness);
        let confine = match mode {
            SandboxMode::On => {
                let mut reads: Vec<PathBuf> = vec![self.program.clone()];
                reads.extend(self.reads.iter().cloned());
                let ruleset = ruleset(&reads, self.work_dir.as_deref())?;
                Some(Confine {
                    ruleset,
                    filters: filter()?,
                    caps: Caps::of_this_process(),
                })
            }
            SandboxMode::Off => None,
        };
        use std::os::unix::process::CommandExt;
        // SAFETY: the closure runs in the forked child before exec; it makes only raw
        // syscalls on data prepared here (no allocation, no lock).
        unsafe {
            command.pre_exec(move || {
                limits.apply()?;
                if let Some(confine) = &confine {
                    confine.apply()?;
                }
                Ok(())
            });
        }
        Ok(tokio::process::Command::from(command))
    }
}

/// `path` made absolute against the current directory (which the child does not share).
fn absolute(path: &Path) -> Result<PathBuf, SandboxError> {
    std::path::absolute(path).map_err(|e| SandboxError::Setup(format!("{}: {e}", path.display())))
}

/// `name` on this process's `PATH` (or `name` itself when it has a `/`), as an absolute path.
fn find_program(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let is_exe = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.contains('/') {
        let path = std::path::absolute(name).ok()?;
        return is_exe(&path).then_some(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| OsString::from(CHILD_PATH));
    std::env::split_paths(&path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .find(|p| is_exe(p))
        .and_then(|p| std::path::absolute(p).ok())
}

/// The Landlock ruleset: everything handled, then the allowed paths.
fn ruleset(reads: &[PathBuf], work_dir: Option<&Path>) -> Result<OwnedFd, SandboxError> {
    let setup = |e: &dyn fmt::Display| SandboxError::Setup(format!("Landlock: {e}"));
    let read = AccessFs::from_read(TARGET_ABI);
    let all = AccessFs::from_all(TARGET_ABI);
    let mut rules: Vec<PathBeneath<PathFd>> = Vec::new();
    let mut rule = |path: &Path, access: BitFlags<AccessFs>, required: bool| {
        let fd = match PathFd::new(path) {
            Ok(fd) => fd,
            Err(_) if !required => return Ok(()),
            Err(e) => return Err(SandboxError::Setup(format!("{}: {e}", path.display()))),
        };
        // Directory rights on a file are an error for Landlock.
        let access = if path.is_dir() {
            access
        } else {
            access & AccessFs::from_file(TARGET_ABI)
        };
        rules.push(PathBeneath::new(fd, access));
        Ok(())
    };
    for path in SYSTEM_READ {
        rule(Path::new(path), read, false)?;
    }
    rule(
        Path::new("/dev/null"),
        AccessFs::ReadFile | AccessFs::WriteFile,
        false,
    )?;
    for path in reads {
        rule(path, read, true)?;
    }
    if let Some(dir) = work_dir {
        rule(dir, all, true)?;
    }
    let created = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(all)
        .map_err(|e| setup(&e))?
        .handle_access(AccessNet::from_all(TARGET_ABI))
        .map_err(|e| setup(&e))?
        .scope(Scope::from_all(TARGET_ABI))
        .map_err(|e| setup(&e))?
        .create()
        .map_err(|e| setup(&e))?
        .add_rules(rules.into_iter().map(Ok::<_, landlock::RulesetError>))
        .map_err(|e| setup(&e))?;
    let fd: Option<OwnedFd> = created.into();
    fd.ok_or_else(|| SandboxError::NoLandlock("no ruleset from the kernel".into()))
}

/// The seccomp program, built once.
fn filter() -> Result<&'static Filters, SandboxError> {
    static FILTER: OnceLock<Result<Filters, String>> = OnceLock::new();
    FILTER
        .get_or_init(|| build_filter().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| SandboxError::Setup(format!("seccomp: {e}")))
}

/// Syscalls ffmpeg never needs and an escape would: EPERM.
fn denied_syscalls() -> Vec<i64> {
    let mut calls: Vec<i64> = vec![
        // Network (and io_uring, which can make sockets without socket()).
        libc::SYS_socket,
        libc::SYS_socketpair,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        // Other processes.
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_process_madvise,
        libc::SYS_pidfd_getfd,
        libc::SYS_kcmp,
        // Mounts, namespaces, roots.
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_chroot,
        libc::SYS_unshare,
        libc::SYS_setns,
        libc::SYS_fsopen,
        libc::SYS_fsconfig,
        libc::SYS_fsmount,
        libc::SYS_fspick,
        libc::SYS_move_mount,
        libc::SYS_open_tree,
        libc::SYS_mount_setattr,
        libc::SYS_open_by_handle_at,
        libc::SYS_name_to_handle_at,
        // Kernel facilities.
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_userfaultfd,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_reboot,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_acct,
        libc::SYS_quotactl,
        libc::SYS_syslog,
        libc::SYS_vhangup,
        libc::SYS_fanotify_init,
        libc::SYS_settimeofday,
        libc::SYS_clock_settime,
        libc::SYS_clock_adjtime,
        libc::SYS_adjtimex,
        libc::SYS_sethostname,
        libc::SYS_setdomainname,
        // Path truncation is not a Landlock right before ABI 3; ffmpeg uses ftruncate.
        libc::SYS_truncate,
    ];
    #[cfg(target_arch = "x86_64")]
    calls.extend([libc::SYS_iopl, libc::SYS_ioperm]);
    calls
}

/// x32 (the x86_64 kernel's ILP32 ABI) shares the audit arch of x86_64, so the arch check
/// does not stop it: its numbers are the same ones with this bit, plus its own for a few.
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: i64 = 0x4000_0000;
/// x32's own numbers for ptrace, kexec_load, process_vm_readv, process_vm_writev.
#[cfg(target_arch = "x86_64")]
const X32_ONLY: [i64; 4] = [521, 528, 539, 540];

/// The two seccomp programs installed in the child.
struct Filters {
    eperm: BpfProgram,
    enosys: BpfProgram,
}

fn build_filter() -> Result<Filters, seccompiler::Error> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)?;
    let mut eperm: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    let mut numbers = denied_syscalls();
    #[cfg(target_arch = "x86_64")]
    {
        let x32: Vec<i64> = numbers
            .iter()
            .map(|n| n | X32_SYSCALL_BIT)
            .chain(X32_ONLY.iter().map(|n| n | X32_SYSCALL_BIT))
            .collect();
        numbers.extend(x32);
    }
    for n in numbers {
        eperm.insert(n, Vec::new());
    }
    // clone(2) with a namespace flag: one rule per flag (rules of a syscall are OR'ed).
    let namespaces = [
        libc::CLONE_NEWUSER,
        libc::CLONE_NEWNS,
        libc::CLONE_NEWNET,
        libc::CLONE_NEWPID,
        libc::CLONE_NEWIPC,
        libc::CLONE_NEWUTS,
        libc::CLONE_NEWCGROUP,
    ];
    let mut clone_rules = Vec::new();
    for flag in namespaces {
        let flag = flag as u64;
        clone_rules.push(SeccompRule::new(vec![SeccompCondition::new(
            0,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(flag),
            flag,
        )?])?);
    }
    eperm.insert(libc::SYS_clone, clone_rules);
    let eperm = SeccompFilter::new(
        eperm,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )?;
    let eperm: BpfProgram = eperm.try_into()?;
    // clone3 passes its flags in memory, out of the filter's reach: ENOSYS makes glibc fall
    // back to clone(2). Its own filter: the kernel runs every filter and the strictest
    // answer wins (ERRNO over ALLOW).
    let enosys = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )?;
    Ok(Filters {
        eperm,
        enosys: enosys.try_into()?,
    })
}

/// The rlimits of a run, ready for the child.
#[derive(Clone, Copy)]
struct Limits {
    cpu: Option<libc::rlimit>,
    fsize: Option<libc::rlimit>,
    niceness: Option<libc::c_int>,
}

impl Limits {
    fn new(cpu_secs: Option<u64>, max_file_bytes: Option<u64>, niceness: Option<i32>) -> Limits {
        Limits {
            niceness,
            cpu: cpu_secs.map(|s| libc::rlimit {
                rlim_cur: s as libc::rlim_t,
                rlim_max: s.saturating_add(5) as libc::rlim_t,
            }),
            fsize: max_file_bytes.map(|b| libc::rlimit {
                rlim_cur: b as libc::rlim_t,
                rlim_max: b as libc::rlim_t,
            }),
        }
    }

    /// In the child: raw setrlimit and setpriority calls only.
    fn apply(&self) -> io::Result<()> {
        if let Some(niceness) = self.niceness {
            // SAFETY: plain syscall; 0 is this (single-threaded, just forked) process.
            if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, niceness) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        let core = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        set_rlimit(libc::RLIMIT_CORE, &core)?;
        if let Some(cpu) = &self.cpu {
            set_rlimit(libc::RLIMIT_CPU, cpu)?;
        }
        if let Some(fsize) = &self.fsize {
            set_rlimit(libc::RLIMIT_FSIZE, fsize)?;
        }
        Ok(())
    }
}

fn set_rlimit(resource: libc::__rlimit_resource_t, limit: &libc::rlimit) -> io::Result<()> {
    // SAFETY: plain syscall on a valid struct.
    if unsafe { libc::setrlimit(resource, limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// This process's capabilities, read in the parent.
#[derive(Clone, Copy)]
struct Caps {
    /// CAP_SETPCAP is held: the bounding set and securebits can be (and are) changed.
    setpcap: bool,
    last_cap: u32,
}

impl Caps {
    fn of_this_process() -> Caps {
        let last_cap = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(63);
        let mut data = [CapData::default(); 2];
        let header = CapHeader {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        // SAFETY: capget fills two CapData for version 3.
        let r = unsafe { libc::syscall(libc::SYS_capget, &header, data.as_mut_ptr()) };
        let setpcap = r == 0 && data[0].effective & (1 << CAP_SETPCAP) != 0;
        Caps { setpcap, last_cap }
    }
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
const CAP_SETPCAP: u32 = 8;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// The confinement, ready for the child.
struct Confine {
    /// Kept open until exec (it is close-on-exec).
    ruleset: OwnedFd,
    filters: &'static Filters,
    caps: Caps,
}

#[repr(C)]
struct SockFprog {
    len: libc::c_ushort,
    filter: *const seccompiler::sock_filter,
}

impl Confine {
    /// In the child, in this order: no privilege left to regain (securebits, bounding and
    /// ambient sets, capset), no_new_privs, Landlock, seccomp (last, so nothing above is
    /// filtered).
    fn apply(&self) -> io::Result<()> {
        let err = io::Error::last_os_error;
        // SAFETY (whole block): raw syscalls on stack data and on data that outlives the
        // child's use of it (the command holds `self`).
        unsafe {
            if self.caps.setpcap {
                // NOROOT, NO_SETUID_FIXUP, NO_CAP_AMBIENT_RAISE and KEEP_CAPS off, all locked:
                // an exec as root gains nothing.
                const SECUREBITS: libc::c_ulong = 0b1110_1111;
                if libc::prctl(libc::PR_SET_SECUREBITS, SECUREBITS, 0, 0, 0) != 0 {
                    return Err(err());
                }
                for cap in 0..=self.caps.last_cap {
                    if libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) != 0 {
                        return Err(err());
                    }
                }
            }
            // EINVAL on kernels without ambient capabilities (nothing to clear there).
            let _ = libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
                0,
                0,
                0,
            );
            let header = CapHeader {
                version: LINUX_CAPABILITY_VERSION_3,
                pid: 0,
            };
            let data = [CapData::default(); 2];
            if libc::syscall(libc::SYS_capset, &header, data.as_ptr()) != 0 {
                return Err(err());
            }
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(err());
            }
            if libc::syscall(
                libc::SYS_landlock_restrict_self,
                self.ruleset.as_raw_fd(),
                0u32,
            ) != 0
            {
                return Err(err());
            }
            for program in [&self.filters.enosys, &self.filters.eperm] {
                let prog = SockFprog {
                    len: program.len() as libc::c_ushort,
                    filter: program.as_ptr(),
                };
                if libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_SET_MODE_FILTER,
                    0u32,
                    &prog as *const SockFprog,
                ) != 0
                {
                    return Err(err());
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_builds_and_denies_x32_too() {
        let filters = build_filter().expect("filter");
        let program = &filters.eperm;
        assert!(
            !program.is_empty() && program.len() < 1000,
            "{}",
            program.len()
        );
        #[cfg(target_arch = "x86_64")]
        {
            let socket_x32 = (libc::SYS_socket | X32_SYSCALL_BIT) as u32;
            assert!(program.iter().any(|i| i.k == socket_x32));
        }
        let clone3 = libc::SYS_clone3 as u32;
        assert!(filters.enosys.iter().any(|i| i.k == clone3));
        assert!(!program.iter().any(|i| i.k == clone3));
    }

    #[test]
    fn programs_are_found_on_the_path() {
        let sh = find_program("sh").expect("sh on PATH");
        assert!(sh.is_absolute());
        assert!(find_program("no-such-program-oscied").is_none());
        assert!(matches!(
            Jail::new("no-such-program-oscied"),
            Err(SandboxError::NotFound(_))
        ));
    }

    #[test]
    fn refusals_say_how_to_run_without_the_sandbox() {
        for e in [
            SandboxError::NoLandlock("ENOSYS".into()),
            SandboxError::NoSeccomp("EINVAL".into()),
        ] {
            assert!(e.to_string().contains("OSCIED_SANDBOX=off"), "{e}");
        }
        assert_eq!(check(SandboxMode::Off).unwrap().landlock_abi, 0);
        // This machine's kernel (the tests need it) has both.
        assert!(check(SandboxMode::On).unwrap().landlock_abi >= 1);
    }

    #[test]
    fn modes_parse_as_on_and_off() {
        assert_eq!(
            SandboxMode::from_str("off", true).unwrap(),
            SandboxMode::Off
        );
        assert_eq!(SandboxMode::from_str("on", true).unwrap(), SandboxMode::On);
        assert!(SandboxMode::from_str("maybe", true).is_err());
        assert_eq!(SandboxMode::default(), SandboxMode::On);
    }
}
