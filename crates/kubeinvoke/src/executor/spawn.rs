//! Starting a command's first process without copying the server.
//!
//! `fork` of the multi-threaded server copies its page tables and leaves its memory shared
//! copy-on-write until the child execs: ~1 ms per command against ~0.1 ms for a `vfork`
//! (BENCHMARKS.md, issue #20). std only uses `posix_spawn` (a `vfork`) when nothing has to
//! happen between fork and exec, and every command needs a uid switch and resource limits, so
//! [`spawn`] does what glibc's `posix_spawn` does, plus those: `clone(CLONE_VM | CLONE_VFORK)`
//! on a stack of its own, the child making raw system calls only, the parent thread suspended
//! until the child has exec'd (or failed). The child comes with a pidfd (`CLONE_PIDFD`), so
//! [`Child::wait`] needs no `SIGCHLD` handling and can never reap an unrelated process.
//!
//! Rules for `child_main`, which runs in the server's memory on the calling thread's
//! thread-local storage while the server's other threads go on: no allocation, no lock, no
//! panic, no libc call that reaches other threads (glibc's `setuid` signals every thread of the
//! process: the raw per-thread system calls are used instead).

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicI32, Ordering};

use rustix::process::{Pid, Signal, WaitIdOptions};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::process_limits::ProcessLimits;

/// The child's own stack: it runs a few system calls, not the command.
const CHILD_STACK_BYTES: usize = 64 * 1024;
/// The highest signal number on Linux.
const MAX_SIGNAL: libc::c_int = 64;

/// What to start: an absolute program, its arguments, a cleared environment, and what the child
/// does to itself before exec.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    cwd: PathBuf,
    /// Switch to this uid (and the gid of the same number), dropping supplementary groups.
    uid: Option<u32>,
    /// Parent-death signal and resource limits, set after the uid switch.
    limits: Option<ProcessLimits>,
    /// A descriptor the program keeps across exec (every other one of the server's is closed).
    keep_fd: Option<RawFd>,
}

impl ProcessSpec {
    /// `program` must be absolute: nothing searches `PATH` between clone and exec.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        ProcessSpec {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: PathBuf::from("/"),
            uid: None,
            limits: None,
            keep_fd: None,
        }
    }

    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(&mut self, args: I) -> &mut Self {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets `key` in the (initially empty) environment, replacing an earlier value.
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Self {
        let (key, value) = (key.as_ref().to_owned(), value.as_ref().to_owned());
        match self.env.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => self.env.push((key, value)),
        }
        self
    }

    pub fn current_dir(&mut self, dir: impl Into<PathBuf>) -> &mut Self {
        self.cwd = dir.into();
        self
    }

    pub fn uid(&mut self, uid: u32) -> &mut Self {
        self.uid = Some(uid);
        self
    }

    pub fn limits(&mut self, limits: ProcessLimits) -> &mut Self {
        self.limits = Some(limits);
        self
    }

    pub fn keep_fd(&mut self, fd: RawFd) -> &mut Self {
        self.keep_fd = Some(fd);
        self
    }

    pub fn program(&self) -> &Path {
        &self.program
    }

    pub fn get_args(&self) -> &[OsString] {
        &self.args
    }
}

/// Where the child's stdin, stdout and stderr come from.
pub struct Stdio {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

impl Stdio {
    /// stdin from `/dev/null`, stdout and stderr both to `output`.
    pub fn null_in_shared_out(output: OwnedFd) -> io::Result<Self> {
        let stdin = rustix::fs::open("/dev/null", rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC, 0.into())?;
        Ok(Stdio { stdin, stderr: output.try_clone()?, stdout: output })
    }
}

/// Everything the child reads, prepared before the clone: the child must not allocate.
struct ChildPlan<'a> {
    program: &'a CString,
    argv: &'a [*const libc::c_char],
    envp: &'a [*const libc::c_char],
    cwd: &'a CString,
    /// Sources for fds 0, 1, 2, each numbered 3 or above (see [`above_stdio`]).
    stdio: [RawFd; 3],
    uid: Option<u32>,
    limits: Option<ProcessLimits>,
    keep_fd: Option<RawFd>,
    /// The errno of the step that failed, written by the child before it exits.
    error: AtomicI32,
}

/// A started process; killed (and reaped) when dropped before it was waited for.
pub struct Child {
    pid: Pid,
    pidfd: Option<AsyncFd<OwnedFd>>,
    status: Option<ExitStatus>,
}

/// Starts `spec` with `stdio`. Returns once the program runs, or with the error of the step that
/// failed (an exec error names a missing program as `NotFound`, as std does). Call it within a
/// tokio runtime: the child's pidfd is registered with its reactor.
pub fn spawn(spec: &ProcessSpec, stdio: Stdio) -> io::Result<Child> {
    let program = c_string(spec.program.as_os_str())?;
    let args = std::iter::once(spec.program.as_os_str())
        .chain(spec.args.iter().map(OsString::as_os_str))
        .map(c_string)
        .collect::<io::Result<Vec<_>>>()?;
    let env = spec
        .env
        .iter()
        .map(|(k, v)| {
            let mut pair = k.clone();
            pair.push("=");
            pair.push(v);
            c_string(&pair)
        })
        .collect::<io::Result<Vec<_>>>()?;
    let cwd = c_string(spec.cwd.as_os_str())?;
    let argv = null_terminated(&args);
    let envp = null_terminated(&env);
    let stdio_fds = [above_stdio(stdio.stdin)?, above_stdio(stdio.stdout)?, above_stdio(stdio.stderr)?];
    let plan = ChildPlan {
        program: &program,
        argv: &argv,
        envp: &envp,
        cwd: &cwd,
        stdio: [stdio_fds[0].as_raw_fd(), stdio_fds[1].as_raw_fd(), stdio_fds[2].as_raw_fd()],
        uid: spec.uid,
        limits: spec.limits,
        keep_fd: spec.keep_fd,
        error: AtomicI32::new(0),
    };
    let mut stack = vec![0u8; CHILD_STACK_BYTES];
    // The stack grows down on every architecture Linux runs this on: pass its aligned top.
    let top = (stack.as_mut_ptr() as usize + CHILD_STACK_BYTES) & !15;
    let mut pidfd: libc::c_int = -1;
    let pid = {
        let _blocked = BlockedSignals::all()?;
        // SAFETY: `child_main` keeps to the rules above; `plan`, `stack` and `pidfd` outlive the
        // child's use of them, since CLONE_VFORK suspends this thread until the child has exec'd
        // or exited. With every signal blocked, no handler of the server runs on the child's stack.
        unsafe {
            libc::clone(
                child_main,
                top as *mut libc::c_void,
                libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD | libc::SIGCHLD,
                &plan as *const ChildPlan as *mut libc::c_void,
                &mut pidfd as *mut libc::c_int,
            )
        }
    };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: CLONE_PIDFD stored a new descriptor of ours there.
    let pidfd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(pidfd) };
    let failed = plan.error.load(Ordering::Acquire);
    if failed != 0 {
        // The child exited without exec: reap it.
        let _ = rustix::process::waitid(rustix::process::WaitId::PidFd(pidfd.as_fd()), WaitIdOptions::EXITED);
        return Err(io::Error::from_raw_os_error(failed));
    }
    let pid = Pid::from_raw(pid).ok_or_else(|| io::Error::other("clone returned pid 0 in the parent"))?;
    // SAFETY: an `OwnedFd` stays open, and the same descriptor, until the `AsyncFd` drops it.
    match unsafe { AsyncFd::register_with_interest(pidfd, Interest::READABLE) } {
        Ok(pidfd) => Ok(Child { pid, pidfd: Some(pidfd), status: None }),
        Err(refused) => {
            let (pidfd, cause) = refused.into_parts();
            let _ = rustix::process::pidfd_send_signal(&pidfd, Signal::KILL);
            let _ = reap(&pidfd, WaitIdOptions::empty());
            Err(cause)
        }
    }
}

/// Runs `spec` to its end with stdin from `/dev/null`: its exit status and its stdout and
/// stderr together.
pub async fn output(spec: &ProcessSpec) -> io::Result<(ExitStatus, Vec<u8>)> {
    use tokio::io::AsyncReadExt;
    let (read_end, write_end) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    let mut child = spawn(spec, Stdio::null_in_shared_out(write_end)?)?;
    let mut output = Vec::new();
    tokio::net::unix::pipe::Receiver::from_owned_fd(read_end)?.read_to_end(&mut output).await?;
    Ok((child.wait().await?, output))
}

impl Child {
    pub fn id(&self) -> Pid {
        self.pid
    }

    /// Waits for the process to end and reaps it; later calls return the same status.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        let pidfd = self.pidfd.as_ref().expect("present until reaped");
        loop {
            let mut ready = pidfd.readable().await?;
            if let Some(status) = reap(pidfd.get_ref(), WaitIdOptions::NOHANG)? {
                self.status = Some(status);
                self.pidfd = None;
                return Ok(status);
            }
            ready.clear_ready();
        }
    }

    /// Sends SIGKILL unless the process was already reaped.
    pub fn kill(&self) -> io::Result<()> {
        match &self.pidfd {
            Some(pidfd) => Ok(rustix::process::pidfd_send_signal(pidfd.get_ref(), Signal::KILL)?),
            None => Ok(()),
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let Some(pidfd) = self.pidfd.take() else { return };
        let _ = rustix::process::pidfd_send_signal(pidfd.get_ref(), Signal::KILL);
        if matches!(reap(pidfd.get_ref(), WaitIdOptions::NOHANG), Ok(Some(_))) {
            return;
        }
        // Killed, not yet gone: reaped in the background so it never stays a zombie.
        let mut child = Child { pid: self.pid, pidfd: Some(pidfd), status: None };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    let _ = child.wait().await;
                });
            }
            Err(_) => {
                if let Some(pidfd) = child.pidfd.take() {
                    let _ = reap(pidfd.get_ref(), WaitIdOptions::empty());
                }
            }
        }
    }
}

/// `waitid(P_PIDFD)` for an exit, as std's [`ExitStatus`].
fn reap(pidfd: &OwnedFd, options: WaitIdOptions) -> io::Result<Option<ExitStatus>> {
    let status =
        rustix::process::waitid(rustix::process::WaitId::PidFd(pidfd.as_fd()), WaitIdOptions::EXITED | options)?;
    Ok(status.map(|status| match (status.exit_status(), status.terminating_signal()) {
        (Some(code), _) => ExitStatus::from_raw((code & 0xff) << 8),
        (None, Some(signal)) => ExitStatus::from_raw(signal & 0x7f),
        (None, None) => ExitStatus::from_raw(0x7f),
    }))
}

fn c_string(text: &OsStr) -> io::Result<CString> {
    CString::new(text.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{text:?} contains a NUL byte")))
}

fn null_terminated(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings.iter().map(|s| s.as_ptr()).chain(std::iter::once(std::ptr::null())).collect()
}

/// The same open file under a close-on-exec number of at least 3 (a new descriptor only when it
/// is below), so that moving the three sources onto 0, 1 and 2 in the child never overwrites a
/// source not yet moved (a server started with stdin closed gets descriptor 0 for its next file).
/// Every source is close-on-exec already (pipes, `/dev/null` and their clones are opened so).
fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    Ok(rustix::io::fcntl_dupfd_cloexec(&fd, 3)?)
}

/// Every signal blocked on this thread while it exists; the previous mask restored on drop.
struct BlockedSignals {
    previous: libc::sigset_t,
}

impl BlockedSignals {
    fn all() -> io::Result<Self> {
        // SAFETY: plain libc calls on local, initialised sigset_t values.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut previous: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            match libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut previous) {
                0 => Ok(BlockedSignals { previous }),
                e => Err(io::Error::from_raw_os_error(e)),
            }
        }
    }
}

impl Drop for BlockedSignals {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved in `all`.
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.previous, std::ptr::null_mut());
        }
    }
}

/// The child, between clone and exec. Returns (and so exits) only when a step failed, after
/// writing its errno into the plan.
extern "C" fn child_main(plan: *mut libc::c_void) -> libc::c_int {
    // SAFETY: the parent passed a `ChildPlan` that lives until this child execs or exits.
    let plan = unsafe { &*(plan as *const ChildPlan) };
    let errno = match prepare_and_exec(plan) {
        Err(e) => e.raw_os_error().filter(|&e| e != 0).unwrap_or(libc::EIO),
        Ok(never) => match never {},
    };
    plan.error.store(errno, Ordering::Release);
    127
}

/// What std's `Command` does in its child, plus the uid switch and the limits, in raw calls.
fn prepare_and_exec(plan: &ChildPlan) -> io::Result<std::convert::Infallible> {
    // The server's signal handlers must never run here: back to the defaults (ignored signals
    // too: Rust ignores SIGPIPE, and an ignored signal stays ignored across exec).
    for signal in 1..=MAX_SIGNAL {
        if signal != libc::SIGKILL && signal != libc::SIGSTOP {
            // The kernel's `struct sigaction` with every field zero is SIG_DFL. The raw call, as
            // glibc's posix_spawn makes it: libc's wrapper refuses the signals it reserves,
            // which a parent may still have ignored. SAFETY: reads the zeroed struct only.
            let default = [0u64; 4];
            unsafe { libc::syscall(libc::SYS_rt_sigaction, signal, default.as_ptr(), std::ptr::null_mut::<u64>(), 8) };
        }
    }
    for (target, &source) in plan.stdio.iter().enumerate() {
        // SAFETY: the sources are open (the parent holds them); the targets are 0, 1, 2.
        if unsafe { libc::dup2(source, target as libc::c_int) } < 0 {
            return Err(io::Error::from_raw_os_error(last_errno()));
        }
    }
    // A process group of its own, which the executor kills as a whole.
    rustix::process::setpgid(None, None)?;
    if let Some(uid) = plan.uid {
        let id = rustix::process::Gid::from_raw(uid);
        rustix::thread::set_thread_groups(&[])?;
        rustix::thread::set_thread_res_gid(id, id, id)?;
        let id = rustix::process::Uid::from_raw(uid);
        rustix::thread::set_thread_res_uid(id, id, id)?;
    }
    rustix::process::chdir(plan.cwd.as_c_str())?;
    if let Some(limits) = plan.limits {
        limits.apply()?;
    }
    if let Some(fd) = plan.keep_fd {
        // SAFETY: the parent keeps this descriptor open until after the spawn.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
    }
    // SAFETY: unblocking this child's own signal mask.
    unsafe {
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    }
    // SAFETY: NUL-terminated strings and null-terminated arrays, prepared by the parent.
    unsafe { libc::execve(plan.program.as_ptr(), plan.argv.as_ptr(), plan.envp.as_ptr()) };
    Err(io::Error::from_raw_os_error(last_errno()))
}

fn last_errno() -> i32 {
    // SAFETY: reads this thread's errno.
    unsafe { *libc::__errno_location() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell(script: &str) -> ProcessSpec {
        let mut spec = ProcessSpec::new("/bin/sh");
        spec.arg("-c").arg(script);
        spec
    }

    async fn text_of(spec: &ProcessSpec) -> (ExitStatus, String) {
        let (status, output) = output(spec).await.unwrap();
        (status, String::from_utf8(output).unwrap())
    }

    #[tokio::test]
    async fn the_program_gets_its_arguments_environment_directory_and_exit_code() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = shell("echo \"$0 $1 [$GREETING] [$HOME]\"; pwd; echo err >&2; exit 7");
        spec.arg("first").env("GREETING", "hi").env("GREETING", "hello").current_dir(dir.path());
        let (status, text) = text_of(&spec).await;
        assert_eq!(status.code(), Some(7));
        let cwd = dir.path().canonicalize().unwrap();
        assert_eq!(text, format!("first  [hello] []\n{}\nerr\n", cwd.display()));
    }

    #[tokio::test]
    async fn signals_are_neither_ignored_nor_blocked_and_the_group_is_its_own() {
        // Rust ignores SIGPIPE and the spawning thread blocks everything around the clone: a
        // command must inherit neither.
        let spec = shell("grep -E '^Sig(Ign|Blk)' /proc/self/status; ps -o pgid= -p $$; echo $$");
        let (status, text) = text_of(&spec).await;
        assert!(status.success(), "{text}");
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        assert_eq!(lines[..2], ["SigBlk:\t0000000000000000", "SigIgn:\t0000000000000000"]);
        assert_eq!(lines[2], lines[3], "the shell leads its own process group");
    }

    #[tokio::test]
    async fn limits_and_a_kept_descriptor_reach_the_program_and_nothing_else_does() {
        let (kept, _other_end) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        let (unkept, _unkept_other) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        let (kept_fd, unkept_fd) = (kept.as_raw_fd(), unkept.as_raw_fd());
        let mut spec = shell(&format!(
            "ulimit -n; ulimit -t; test -e /proc/self/fd/{kept_fd} && echo kept; test -e /proc/self/fd/{unkept_fd} || echo closed"
        ));
        spec.limits(ProcessLimits { open_files: Some(77), cpu_seconds: Some(9), ..Default::default() })
            .keep_fd(kept_fd);
        let (status, text) = text_of(&spec).await;
        assert!(status.success(), "{text}");
        assert_eq!(text, "77\n9\nkept\nclosed\n");
    }

    #[tokio::test]
    async fn the_uid_switch_drops_every_group_or_is_refused() {
        let mut spec = shell("id -u; id -g; id -G");
        spec.uid(61999);
        if rustix::process::geteuid().is_root() {
            let (status, text) = text_of(&spec).await;
            assert!(status.success(), "{text}");
            assert_eq!(text, "61999\n61999\n61999\n");
        } else {
            let refused = output(&spec).await.unwrap_err();
            assert_eq!(refused.raw_os_error(), Some(libc::EPERM), "{refused}");
        }
    }

    #[tokio::test]
    async fn a_missing_program_is_named_as_not_found() {
        let spec = ProcessSpec::new("/nonexistent/kubeinvoke-test-program");
        let (read_end, write_end) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        drop(read_end);
        let refused = spawn(&spec, Stdio::null_in_shared_out(write_end).unwrap()).err().unwrap();
        assert_eq!(refused.kind(), io::ErrorKind::NotFound);
    }

    #[tokio::test]
    async fn a_killed_process_reports_the_signal_and_a_dropped_one_is_killed_and_reaped() {
        let (read_end, write_end) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        let mut child = spawn(&shell("sleep 30"), Stdio::null_in_shared_out(write_end).unwrap()).unwrap();
        child.kill().unwrap();
        assert_eq!(child.wait().await.unwrap().signal(), Some(libc::SIGKILL));
        assert_eq!(child.wait().await.unwrap().signal(), Some(libc::SIGKILL), "the same status again");
        drop(read_end);

        let (_read_end, write_end) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        let child = spawn(&shell("exec sleep 30"), Stdio::null_in_shared_out(write_end).unwrap()).unwrap();
        let proc_dir = PathBuf::from(format!("/proc/{}", child.id().as_raw_nonzero()));
        drop(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while proc_dir.exists() && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(!proc_dir.exists(), "a dropped child is killed and reaped, not left a zombie");
    }
}
