//! Processes started in a running container (`Exec`): containerd's Tasks.Exec with the container's
//! own process spec, wired to FIFOs the agent reads and writes.
//!
//! Each process gets `runtime/exec/<exec-id>/` holding the FIFOs `stdin` (if asked for), `stdout`
//! and, without a terminal, `stderr`, plus `container`: the containerd id it runs in, so that the next
//! agent can kill what this one left behind. The agent opens its ends read-write: opening never
//! blocks, and reading never sees end of file however the shim opens and closes its side. So the end
//! of a process is learnt from Tasks.Wait, not from the FIFOs: after the exit comes
//! Tasks.DeleteProcess (the runc shim first finishes copying the output and closes its ends), then
//! whatever is left in the FIFOs is read and sent, then the exit code.
//!
//! One task per process drives it. Output is forwarded read by read, without batching (keystroke
//! echo is latency-sensitive). Stdin is written without ever holding up the output: a process that
//! does not read its stdin holds up only more stdin. If the caller goes away first, the process is
//! killed (SIGKILL to it alone), waited for and deleted. The directory goes whatever happens.

use std::io::ErrorKind;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_proto::node::ExecStart;
use bytes::{Buf as _, Bytes};
use nix::sys::stat::Mode;
use serde_json::{Value, json};
use tokio::net::unix::pipe;
use tokio::sync::mpsc;
use tonic::Code;

use super::client::{Containerd, ExecStdio};
use crate::runtime::{ExecError, ExecProcess, ProcessInput, ProcessOutput};

/// The most one read takes from a FIFO (a pipe's default capacity).
const READ_BUFFER: usize = 64 * 1024;
/// Messages queued each way between the caller and the process's task.
const QUEUE: usize = 16;
/// How long a killed process may take to be reported gone.
const KILL_WAIT: Duration = Duration::from_secs(10);
const SIGKILL: u32 = 9;
/// The exit code reported for a process that vanished without containerd telling its exit (as if
/// killed).
const VANISHED_EXIT: i32 = 137;
/// The file in a process's directory naming its container.
const CONTAINER_FILE: &str = "container";

/// Starts `request.command` in the running task of containerd container `container_id` (the
/// container `request.container` of the group) and spawns the task that drives it.
pub(super) async fn start(
    cd: &Containerd,
    exec_root: &Path,
    container_id: &str,
    request: &ExecStart,
) -> Result<ExecProcess, ExecError> {
    let not_running = || ExecError::NotRunning {
        container: request.container.clone(),
    };
    let begun = std::time::Instant::now();
    let spec = cd
        .container_spec(container_id)
        .await
        .map_err(|status| match status.code() {
            // Removed meanwhile.
            Code::NotFound => not_running(),
            _ => ExecError::Containerd {
                action: "read the container's spec",
                status,
            },
        })?;
    let process = process_spec(&spec, request).ok_or_else(|| ExecError::NoProcessSpec {
        container: request.container.clone(),
    })?;
    let spec_read = begun.elapsed();
    let exec_id = format!("exec-{:016x}", rand::random::<u64>());
    let dir = ExecDir::create(exec_root.join(&exec_id), container_id)?;
    let fifos = Fifos::open(&dir.path, request.tty, request.stdin)?;

    if let Err(status) = cd
        .exec(container_id, &exec_id, &process, fifos.stdio(request.tty))
        .await
    {
        return Err(if task_running(cd, container_id).await {
            ExecError::Containerd {
                action: "add the process",
                status,
            }
        } else {
            not_running()
        });
    }
    let added = begun.elapsed();
    let pid = match cd.start_process(container_id, &exec_id).await {
        Ok(pid) => pid,
        Err(status) => {
            // A process that could not start leaves no record behind.
            if let Err(error) = cd.delete_process(container_id, &exec_id).await {
                tracing::warn!(container = container_id, exec = %exec_id, %error, "cannot delete a process that did not start");
            }
            return Err(if task_running(cd, container_id).await {
                ExecError::CannotStart {
                    message: status.message().to_string(),
                }
            } else {
                not_running()
            });
        }
    };
    tracing::debug!(
        container = container_id,
        exec = %exec_id,
        pid,
        spec_ms = spec_read.as_secs_f64() * 1e3,
        added_ms = added.as_secs_f64() * 1e3,
        started_ms = begun.elapsed().as_secs_f64() * 1e3,
        "exec process started"
    );

    let (input_tx, input_rx) = mpsc::channel(QUEUE);
    let (output_tx, output_rx) = mpsc::channel(QUEUE);
    let session = Session {
        cd: cd.clone(),
        container: container_id.to_string(),
        exec_id,
        tty: request.tty,
        fifos,
        _dir: dir,
    };
    tokio::spawn(session.drive(input_rx, output_tx));
    Ok(ExecProcess {
        pid,
        input: input_tx,
        output: output_rx,
    })
}

/// The exec process's spec: the container's own `process` (env, cwd, user, capabilities, rlimits,
/// noNewPrivileges, AppArmor and SELinux labels…) with `args`, `terminal` and `consoleSize`
/// replaced. `None` if the container's spec has no process.
fn process_spec(container_spec: &Value, request: &ExecStart) -> Option<Value> {
    let mut process = container_spec.get("process")?.clone();
    let fields = process.as_object_mut()?;
    fields.insert("args".into(), json!(request.command));
    fields.insert("terminal".into(), json!(request.tty));
    // Windows' whole command line would override `args`.
    fields.remove("commandLine");
    match request.size.as_ref() {
        Some(size) if request.tty && size.rows > 0 && size.cols > 0 => {
            fields.insert(
                "consoleSize".into(),
                json!({"height": size.rows, "width": size.cols}),
            );
        }
        _ => {
            fields.remove("consoleSize");
        }
    }
    Some(process)
}

async fn task_running(cd: &Containerd, container_id: &str) -> bool {
    match cd.task(container_id).await {
        Ok(task) => task.is_some_and(|t| t.running),
        // Cannot tell: say what containerd said about the process instead.
        Err(_) => true,
    }
}

/// Kills the exec processes a previous agent left (their callers went away with it) and removes
/// their directories. What is there is listed now, so processes started from now on are never
/// touched; the killing goes on in the background.
pub(super) fn reap_leftovers(cd: &Containerd, exec_root: &Path) {
    let dirs: Vec<PathBuf> = std::fs::read_dir(exec_root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .collect();
    if dirs.is_empty() {
        return;
    }
    let cd = cd.clone();
    tokio::spawn(async move {
        for dir in dirs {
            let exec_id = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if let Ok(container) = std::fs::read_to_string(dir.join(CONTAINER_FILE)) {
                let container = container.trim();
                tracing::info!(container, exec = %exec_id, "killing an exec process a previous agent left");
                let _ = cd.kill_process(container, &exec_id, SIGKILL).await;
                let _ = tokio::time::timeout(KILL_WAIT, cd.wait_process(container, &exec_id)).await;
                let _ = cd.delete_process(container, &exec_id).await;
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
    });
}

/// A process's directory, removed (with its FIFOs) when dropped.
struct ExecDir {
    path: PathBuf,
}

impl ExecDir {
    fn create(path: PathBuf, container_id: &str) -> Result<Self, ExecError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ExecError::Io { path, source }
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&path)
            .map_err(io(&path))?;
        let dir = Self { path };
        let file = dir.path.join(CONTAINER_FILE);
        std::fs::write(&file, container_id).map_err(io(&file))?;
        Ok(dir)
    }
}

impl Drop for ExecDir {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.path)
            && error.kind() != ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), %error, "cannot remove an exec directory");
        }
    }
}

/// The agent's ends of a process's FIFOs, and their paths for containerd.
struct Fifos {
    stdin_path: String,
    stdout_path: String,
    stderr_path: String,
    /// `None` once closed (or if not asked for).
    stdin: Option<pipe::Sender>,
    /// `None` only after a read failed.
    stdout: Option<pipe::Receiver>,
    /// `None` with a terminal.
    stderr: Option<pipe::Receiver>,
}

impl Fifos {
    fn open(dir: &Path, tty: bool, stdin: bool) -> Result<Self, ExecError> {
        let path = |name: &str| dir.join(name);
        let stdin = if stdin {
            let path = path("stdin");
            Some((fifo(&path, |o, p| o.open_sender(p))?, path))
        } else {
            None
        };
        let stdout_path = path("stdout");
        let stdout = fifo(&stdout_path, |o, p| o.open_receiver(p))?;
        let stderr = if tty {
            None
        } else {
            let path = path("stderr");
            Some((fifo(&path, |o, p| o.open_receiver(p))?, path))
        };
        let text = |p: Option<&PathBuf>| p.map(|p| p.to_string_lossy().into_owned());
        Ok(Self {
            stdin_path: text(stdin.as_ref().map(|s| &s.1)).unwrap_or_default(),
            stdout_path: stdout_path.to_string_lossy().into_owned(),
            stderr_path: text(stderr.as_ref().map(|s| &s.1)).unwrap_or_default(),
            stdin: stdin.map(|s| s.0),
            stdout: Some(stdout),
            stderr: stderr.map(|s| s.0),
        })
    }

    /// Everything left in the output FIFOs, read directly (not through the reactor, whose readiness
    /// may lag): they are non-blocking, so an empty one answers EAGAIN.
    fn drain(&self, buf: &mut [u8]) -> Vec<(Stream, Vec<u8>)> {
        let mut left = Vec::new();
        for (stream, fifo) in [
            (Stream::Stdout, self.stdout.as_ref()),
            (Stream::Stderr, self.stderr.as_ref()),
        ] {
            let Some(fifo) = fifo else { continue };
            loop {
                match nix::unistd::read(fifo, buf) {
                    Ok(0) => break,
                    Ok(n) => left.push((stream, buf[..n].to_vec())),
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(_) => break,
                }
            }
        }
        left
    }

    fn stdio(&self, terminal: bool) -> ExecStdio<'_> {
        ExecStdio {
            stdin: &self.stdin_path,
            stdout: &self.stdout_path,
            stderr: &self.stderr_path,
            terminal,
        }
    }
}

/// Makes FIFO `path` and opens it read-write with `open` (never blocks, never sees end of file).
fn fifo<T>(
    path: &Path,
    open: impl FnOnce(&pipe::OpenOptions, &Path) -> std::io::Result<T>,
) -> Result<T, ExecError> {
    let io = |source| ExecError::Io {
        path: path.to_path_buf(),
        source,
    };
    nix::unistd::mkfifo(path, Mode::S_IRUSR | Mode::S_IWUSR)
        .map_err(|errno| io(std::io::Error::from(errno)))?;
    let mut options = pipe::OpenOptions::new();
    options.read_write(true);
    open(&options, path).map_err(io)
}

/// Which output FIFO.
#[derive(Debug, Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
}

/// How the process's drive ended.
enum Ending {
    Exited(i32),
    CallerGone,
}

/// One running exec process, owned by the task that drives it.
struct Session {
    cd: Containerd,
    container: String,
    exec_id: String,
    tty: bool,
    fifos: Fifos,
    /// Last, so the directory goes after the FIFOs are closed.
    _dir: ExecDir,
}

impl Session {
    /// Forwards output and input until the process exits (then the rest of its output and its exit
    /// code) or the caller goes away (then the process is killed); cleans up either way.
    async fn drive(
        mut self,
        mut input: mpsc::Receiver<ProcessInput>,
        output: mpsc::Sender<ProcessOutput>,
    ) {
        let cd = self.cd.clone();
        let (container, exec_id) = (self.container.clone(), self.exec_id.clone());
        let exit = exit_code(&cd, &container, &exec_id);
        tokio::pin!(exit);
        let mut buf = vec![0_u8; READ_BUFFER];
        // Stdin taken from `input` but not yet written into the FIFO.
        let mut pending = Bytes::new();
        let ending = loop {
            tokio::select! {
                ready = readable(self.fifos.stdout.as_ref()) => {
                    if let Some(data) = self.read(Stream::Stdout, ready, &mut buf)
                        && output.send(ProcessOutput::Stdout(data)).await.is_err()
                    {
                        break Ending::CallerGone;
                    }
                }
                ready = readable(self.fifos.stderr.as_ref()) => {
                    if let Some(data) = self.read(Stream::Stderr, ready, &mut buf)
                        && output.send(ProcessOutput::Stderr(data)).await.is_err()
                    {
                        break Ending::CallerGone;
                    }
                }
                ready = writable(self.fifos.stdin.as_ref()), if !pending.is_empty() => {
                    match ready {
                        Ok(()) => self.write_stdin(&mut pending),
                        Err(error) => self.lose_stdin(&mut pending, &error),
                    }
                }
                message = input.recv(), if pending.is_empty() => match message {
                    Some(ProcessInput::Stdin(data)) => {
                        pending = Bytes::from(data);
                        self.write_stdin(&mut pending);
                    }
                    Some(ProcessInput::CloseStdin) => self.close_stdin().await,
                    Some(ProcessInput::Resize { rows, cols }) => self.resize(rows, cols).await,
                    None => break Ending::CallerGone,
                },
                code = &mut exit => break Ending::Exited(code),
                () = output.closed() => break Ending::CallerGone,
            }
        };
        match ending {
            Ending::Exited(code) => {
                self.delete().await;
                for (stream, data) in self.fifos.drain(&mut buf) {
                    let message = match stream {
                        Stream::Stdout => ProcessOutput::Stdout(data),
                        Stream::Stderr => ProcessOutput::Stderr(data),
                    };
                    if output.send(message).await.is_err() {
                        return;
                    }
                }
                tracing::debug!(container = %container, exec = %exec_id, code, "exec process exited");
                let _ = output.send(ProcessOutput::Exited(code)).await;
            }
            Ending::CallerGone => {
                tracing::debug!(container = %container, exec = %exec_id, "the caller went away: killing the exec process");
                if let Err(error) = cd.kill_process(&container, &exec_id, SIGKILL).await {
                    tracing::warn!(container = %container, exec = %exec_id, %error, "cannot kill an exec process");
                }
                if tokio::time::timeout(KILL_WAIT, &mut exit).await.is_err() {
                    tracing::warn!(container = %container, exec = %exec_id, "an exec process outlived SIGKILL by {KILL_WAIT:?}");
                }
                self.delete().await;
            }
        }
    }

    /// One read of an output FIFO that was reported ready: `None` if there was nothing after all.
    /// A FIFO that fails is not read again.
    fn read(
        &mut self,
        stream: Stream,
        ready: std::io::Result<()>,
        buf: &mut [u8],
    ) -> Option<Vec<u8>> {
        let fifo = match stream {
            Stream::Stdout => &mut self.fifos.stdout,
            Stream::Stderr => &mut self.fifos.stderr,
        };
        let read = ready.and_then(|()| match fifo.as_ref() {
            Some(receiver) => receiver.try_read(buf),
            None => Err(ErrorKind::WouldBlock.into()),
        });
        match read {
            // Not with a read-write FIFO; if it happens anyway, do not spin on it.
            Ok(0) => {
                *fifo = None;
                None
            }
            Ok(n) => Some(buf[..n].to_vec()),
            Err(error) if error.kind() == ErrorKind::WouldBlock => None,
            Err(error) => {
                tracing::warn!(exec = %self.exec_id, ?stream, %error, "cannot read an exec process's output");
                *fifo = None;
                None
            }
        }
    }

    /// Writes as much of `pending` as the stdin FIFO takes now.
    fn write_stdin(&mut self, pending: &mut Bytes) {
        let Some(stdin) = self.fifos.stdin.as_ref() else {
            // Not asked for, or already closed.
            pending.clear();
            return;
        };
        while !pending.is_empty() {
            match stdin.try_write(pending) {
                Ok(n) => pending.advance(n),
                Err(error) if error.kind() == ErrorKind::WouldBlock => return,
                Err(error) => {
                    self.lose_stdin(pending, &error);
                    return;
                }
            }
        }
    }

    fn lose_stdin(&mut self, pending: &mut Bytes, error: &std::io::Error) {
        tracing::warn!(exec = %self.exec_id, %error, "cannot write an exec process's stdin");
        self.fifos.stdin = None;
        pending.clear();
    }

    /// Ends stdin: our end of the FIFO closes, then the shim's (CloseIO), so the process reads end
    /// of file.
    async fn close_stdin(&mut self) {
        if self.fifos.stdin.take().is_none() {
            return;
        }
        if let Err(error) = self.cd.close_stdin(&self.container, &self.exec_id).await {
            tracing::debug!(exec = %self.exec_id, %error, "cannot close an exec process's stdin");
        }
    }

    async fn resize(&self, rows: u32, cols: u32) {
        if !self.tty || rows == 0 || cols == 0 {
            return;
        }
        let resized = self
            .cd
            .resize_pty(&self.container, &self.exec_id, rows, cols)
            .await;
        if let Err(error) = resized {
            tracing::debug!(exec = %self.exec_id, %error, "cannot resize an exec process's terminal");
        }
    }

    async fn delete(&self) {
        if let Err(error) = self.cd.delete_process(&self.container, &self.exec_id).await {
            tracing::warn!(container = %self.container, exec = %self.exec_id, %error, "cannot delete an exec process");
        }
    }
}

/// The process's exit code, waiting again while containerd cannot answer (it may be restarting;
/// the shim keeps the process).
async fn exit_code(cd: &Containerd, container: &str, exec_id: &str) -> i32 {
    let mut delay = Duration::from_millis(100);
    loop {
        match cd.wait_process(container, exec_id).await {
            Ok((status, _)) => return i32::try_from(status).unwrap_or(i32::MAX),
            Err(status) if status.code() == Code::NotFound => return VANISHED_EXIT,
            Err(status) => {
                tracing::debug!(exec = exec_id, %status, "waiting on an exec process again");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn readable(fifo: Option<&pipe::Receiver>) -> std::io::Result<()> {
    match fifo {
        Some(fifo) => fifo.readable().await,
        None => std::future::pending().await,
    }
}

async fn writable(fifo: Option<&pipe::Sender>) -> std::io::Result<()> {
    match fifo {
        Some(fifo) => fifo.writable().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use berth_proto::node::TerminalSize;

    use super::*;

    fn request(command: &[&str], tty: bool, size: Option<(u32, u32)>) -> ExecStart {
        ExecStart {
            group_id: "g".into(),
            container: "c".into(),
            command: command.iter().map(|s| (*s).to_string()).collect(),
            tty,
            stdin: true,
            size: size.map(|(rows, cols)| TerminalSize { rows, cols }),
        }
    }

    #[test]
    fn the_process_spec_is_the_containers_with_new_args_and_terminal() {
        let container = json!({
            "ociVersion": "1.1.0",
            "root": {"path": "rootfs"},
            "process": {
                "args": ["nginx", "-g", "daemon off;"],
                "env": ["PATH=/usr/bin:/bin", "SECRET=s3cr3t"],
                "cwd": "/srv",
                "user": {"uid": 1000, "gid": 1000, "additionalGids": [5]},
                "capabilities": {"bounding": ["CAP_CHOWN"], "effective": ["CAP_CHOWN"]},
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                "noNewPrivileges": true,
                "apparmorProfile": "berth-default",
                "terminal": false,
                "consoleSize": {"height": 1, "width": 1},
            },
        });
        let tty = process_spec(
            &container,
            &request(&["sh", "-c", "a  b"], true, Some((24, 80))),
        )
        .unwrap();
        let mut want = container["process"].clone();
        want["args"] = json!(["sh", "-c", "a  b"]);
        want["terminal"] = json!(true);
        want["consoleSize"] = json!({"height": 24, "width": 80});
        assert_eq!(tty, want);

        let plain = process_spec(&container, &request(&["ls"], false, Some((24, 80)))).unwrap();
        assert_eq!(plain["terminal"], json!(false));
        assert!(plain.get("consoleSize").is_none(), "{plain}");
        assert_eq!(plain["env"], container["process"]["env"]);
        let unsized_tty = process_spec(&container, &request(&["ls"], true, Some((0, 80)))).unwrap();
        assert!(unsized_tty.get("consoleSize").is_none(), "{unsized_tty}");

        assert!(process_spec(&json!({"root": {}}), &request(&["ls"], false, None)).is_none());
    }

    #[tokio::test]
    async fn fifos_open_without_a_peer_and_the_directory_goes_when_dropped() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("exec-1");
        let dir = ExecDir::create(path.clone(), "g-c0").unwrap();
        assert_eq!(
            std::fs::read_to_string(path.join(CONTAINER_FILE)).unwrap(),
            "g-c0"
        );
        let fifos = Fifos::open(&dir.path, false, true).unwrap();
        let stdio = fifos.stdio(false);
        assert_eq!(stdio.stdin, path.join("stdin").to_string_lossy());
        assert_eq!(stdio.stderr, path.join("stderr").to_string_lossy());

        // The shim's side, opened later, and bytes both ways.
        let mut options = pipe::OpenOptions::new();
        options.read_write(true);
        let shim_stdin = options.open_receiver(stdio.stdin).unwrap();
        let shim_stdout = options.open_sender(stdio.stdout).unwrap();
        let ours = fifos.stdin.as_ref().unwrap();
        ours.writable().await.unwrap();
        assert_eq!(ours.try_write(b"in").unwrap(), 2);
        let mut buf = [0_u8; 8];
        shim_stdin.readable().await.unwrap();
        assert_eq!(shim_stdin.try_read(&mut buf).unwrap(), 2);
        shim_stdout.writable().await.unwrap();
        shim_stdout.try_write(b"out").unwrap();
        // The shim closing its end is no end of file for us: what it wrote is there, then nothing.
        drop(shim_stdout);
        let drained = fifos.drain(&mut [0_u8; 16]);
        assert_eq!(drained.len(), 1);
        assert!(matches!(drained[0].0, Stream::Stdout));
        assert_eq!(drained[0].1, b"out");
        assert!(fifos.drain(&mut [0_u8; 16]).is_empty());
        drop(fifos);
        drop(dir);
        assert!(!path.exists());

        let tty_dir = ExecDir::create(root.path().join("exec-2"), "g-c0").unwrap();
        let tty = Fifos::open(&tty_dir.path, true, false).unwrap();
        let stdio = tty.stdio(true);
        assert_eq!((stdio.stdin, stdio.stderr, stdio.terminal), ("", "", true));
        assert!(tty.stderr.is_none() && tty.stdin.is_none());
    }
}
