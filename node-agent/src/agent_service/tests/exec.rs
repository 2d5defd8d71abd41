//! `Exec` (and `Logs` of a real container) against the containerd runtime: a containerd of the test's
//! own, a local registry with the busybox image, and a group running one container, called through
//! `AgentService` over mutual TLS as the apiserver calls it. Needs root, containerd, runc and the CNI
//! plugins (`scripts/setup`), and `berth-logger` built next to the test binary's directory
//! (`cargo build -p berth-node-agent`, which `scripts/test` does first).

use std::sync::atomic::{AtomicU32, Ordering};

use berth_proto::node::{
    Container, DesiredPhase, EnvVar, ExecOutput, GroupSpec, SecurityContext, exec_output,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::*;
use crate::runtime::containerd::{ContainerdConfig, ContainerdRuntime};
use crate::runtime::{Changes, ProcessOutput};
use crate::testing::{Containerd, Registry, push_busybox};

/// Generous: two cores shared with a compiler.
const PATIENCE: Duration = Duration::from_secs(120);
const GROUP: &str = "g1";
const CONTAINER: &str = "box";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// `target/debug`, where `berth-logger` is built.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

/// Everything one test runs, removed when dropped (also when the test fails).
struct Node {
    agent: Agent,
    runtime: ContainerdRuntime,
    assignment: GroupAssignment,
    exec_root: PathBuf,
    /// What a restarted agent would be started with.
    config: ContainerdConfig,
    state: PathBuf,
    bridge: String,
    subnet: String,
    cgroup_parent: String,
    containerd: Option<Containerd>,
    registry: Option<Registry>,
    dir: tempfile::TempDir,
}

impl Node {
    /// Group `g1` running container `box` (busybox) with `command`, env `GREETING=hello` and user
    /// `uid` (else root), served by an agent.
    async fn start(command: &[&str], uid: Option<i64>) -> Self {
        let logger = bin_dir().join("berth-logger");
        assert!(
            logger.is_file(),
            "{} is missing: run `cargo build -p berth-node-agent` first",
            logger.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("bx")
            .tempdir_in("/tmp")
            .unwrap();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let containerd = Containerd::start(&dir.path().join("c")).await.unwrap();
        let registry = Registry::start(&dir.path().join("r"), None).await.unwrap();
        push_busybox(&registry, "busybox:latest", None)
            .await
            .unwrap();
        let image = format!("{}/busybox:latest", registry.addr);
        let bridge = format!("bx{}{n}", pid % 10_000);
        let subnet = format!("10.{}.{}.0/24", 250 + n % 6, pid % 250);
        let cgroup_parent = format!("berth-exec-test-{pid}-{n}");
        let config = ContainerdConfig {
            socket: containerd.socket.clone(),
            // runc keeps state per namespace for the whole host: ours alone.
            namespace: format!("berth-exec-{pid}-{n}"),
            bridge: bridge.clone(),
            subnet: subnet.clone(),
            logger,
            cgroup_parent: cgroup_parent.clone(),
            stop_grace: Duration::from_secs(5),
            ..ContainerdConfig::default()
        };
        let state = dir.path().join("a");
        let runtime = ContainerdRuntime::start(config.clone(), &state, Changes::default())
            .await
            .unwrap();
        let assignment = GroupAssignment {
            placement: 1,
            group_id: GROUP.into(),
            generation: 1,
            phase: DesiredPhase::Running as i32,
            spec: Some(GroupSpec {
                name: GROUP.into(),
                restart_policy: "Never".into(),
                containers: vec![Container {
                    name: CONTAINER.into(),
                    image,
                    command: command.iter().map(|s| (*s).to_owned()).collect(),
                    env: vec![EnvVar {
                        name: "GREETING".into(),
                        value: "hello".into(),
                        secure: false,
                    }],
                    security_context: Some(SecurityContext {
                        run_as_user: uid,
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        };
        let agent = Agent::serving(Arc::new(runtime.clone())).await;
        let node = Self {
            agent,
            runtime,
            assignment,
            exec_root: state.join("runtime").join("exec"),
            config,
            state,
            bridge,
            subnet,
            cgroup_parent,
            containerd: Some(containerd),
            registry: Some(registry),
            dir,
        };
        node.runtime.start(&node.assignment).await.unwrap();
        node.wait_phase(GroupPhase::Running).await;
        node
    }

    async fn wait_phase(&self, phase: GroupPhase) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let status = self.runtime.status(GROUP);
            if status.as_ref().is_some_and(|s| s.phase() == phase) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the group never became {phase:?}: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn client(&self) -> AgentServiceClient<Channel> {
        self.agent.apiserver().await
    }

    /// The exec directories that exist.
    fn exec_dirs(&self) -> Vec<String> {
        std::fs::read_dir(&self.exec_root)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    /// Removes the group as the supervisor would and waits until it is gone.
    async fn finish(self) {
        self.runtime.remove(GROUP).await.unwrap();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while self.runtime.status(GROUP).is_some() {
            assert!(tokio::time::Instant::now() < deadline, "never removed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(self.exec_dirs(), Vec::<String>::new());
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.agent.shutdown.cancel();
        // containerd first (it kills what still runs and unmounts root filesystems), then mounts,
        // CNI rules and the bridge, then the cgroup parent.
        drop(self.containerd.take());
        drop(self.registry.take());
        crate::testing::remove_node_leftovers(self.dir.path(), &self.subnet, &self.bridge);
        let hierarchies = std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten();
        for hierarchy in hierarchies
            .flatten()
            .map(|e| e.path())
            .chain([PathBuf::from("/sys/fs/cgroup")])
        {
            let parent = hierarchy.join(&self.cgroup_parent);
            for group in std::fs::read_dir(&parent).into_iter().flatten().flatten() {
                let _ = std::fs::remove_dir(group.path());
            }
            let _ = std::fs::remove_dir(&parent);
        }
    }
}

/// One exec call as the apiserver holds it.
struct Session {
    input: mpsc::Sender<ExecInput>,
    output: tonic::Streaming<ExecOutput>,
    pid: u32,
}

/// What a process wrote until it exited, and its exit code.
#[derive(Debug, Default)]
struct Outcome {
    stdout: String,
    stderr: String,
    exit_code: i32,
}

fn start(command: &[&str], tty: bool, stdin: bool, size: Option<(u32, u32)>) -> ExecStart {
    ExecStart {
        group_id: GROUP.into(),
        container: CONTAINER.into(),
        command: command.iter().map(|s| (*s).to_owned()).collect(),
        tty,
        stdin,
        size: size.map(|(rows, cols)| TerminalSize { rows, cols }),
    }
}

fn input(input: exec_input::Input) -> ExecInput {
    ExecInput { input: Some(input) }
}

impl Session {
    /// Starts `start`; fails with the call's status if the agent refuses.
    async fn open(
        client: &mut AgentServiceClient<Channel>,
        start: ExecStart,
    ) -> Result<Self, Status> {
        let (tx, rx) = mpsc::channel(16);
        tx.send(input(exec_input::Input::Start(start)))
            .await
            .unwrap();
        let mut output = client.exec(ReceiverStream::new(rx)).await?.into_inner();
        let first = tokio::time::timeout(PATIENCE, output.message())
            .await
            .expect("no first message")?;
        match first.and_then(|m| m.output) {
            Some(exec_output::Output::StartedPid(pid)) => Ok(Self {
                input: tx,
                output,
                pid,
            }),
            other => panic!("the first message is not started_pid: {other:?}"),
        }
    }

    async fn send(&self, message: exec_input::Input) {
        self.input.send(input(message)).await.unwrap();
    }

    /// Reads output until the stdout received so far contains `want`.
    async fn expect_stdout(&mut self, received: &mut String, want: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !received.contains(want) {
            let next = tokio::time::timeout_at(deadline, self.output.message()).await;
            let message = next
                .unwrap_or_else(|_| panic!("never got {want:?}; got {received:?}"))
                .unwrap()
                .and_then(|m| m.output);
            match message {
                Some(exec_output::Output::Stdout(data)) => {
                    received.push_str(&String::from_utf8_lossy(&data));
                }
                other => panic!("waiting for {want:?} (got {received:?}), came {other:?}"),
            }
        }
    }

    /// Reads everything until the exit code, which must be the last message.
    async fn outcome(mut self) -> Outcome {
        let mut outcome = Outcome::default();
        let mut exited = None;
        let read = async {
            while let Some(message) = self.output.message().await.unwrap() {
                assert!(
                    exited.is_none(),
                    "a message after the exit code: {message:?}"
                );
                match message.output {
                    Some(exec_output::Output::Stdout(data)) => {
                        outcome.stdout.push_str(&String::from_utf8_lossy(&data));
                    }
                    Some(exec_output::Output::Stderr(data)) => {
                        outcome.stderr.push_str(&String::from_utf8_lossy(&data));
                    }
                    Some(exec_output::Output::ExitCode(code)) => exited = Some(code),
                    other => panic!("unexpected {other:?}"),
                }
            }
        };
        tokio::time::timeout(PATIENCE, read)
            .await
            .expect("the process never exited");
        outcome.exit_code = exited.expect("the stream ended without an exit code");
        outcome
    }
}

/// Runs `command` without stdin or a terminal, to its end.
async fn run(client: &mut AgentServiceClient<Channel>, command: &[&str]) -> Outcome {
    let session = Session::open(client, start(command, false, false, None))
        .await
        .unwrap();
    session.outcome().await
}

/// Pids of the processes whose command line is exactly `argv`.
fn processes(argv: &[&str]) -> Vec<i32> {
    let want: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            (cmdline == want).then_some(pid)
        })
        .collect()
}

/// The pids running `argv` once there are any: an exec's start returns when runc has started the
/// process, which may still be `runc init` on its way to `execve`.
async fn until_running(argv: &[&str]) -> Vec<i32> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let pids = processes(argv);
        if !pids.is_empty() {
            return pids;
        }
        assert!(tokio::time::Instant::now() < deadline, "{argv:?} never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn until_gone(argv: &[&str]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !processes(argv).is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{argv:?} still runs: {:?}",
            processes(argv)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn exec_runs_the_exact_argv_as_the_container_does_with_its_exit_code() {
    let node = Node::start(&["sleep", "3600"], Some(1000)).await;
    let mut client = node.client().await;

    let both = run(&mut client, &["sh", "-c", "echo out; echo err >&2"]).await;
    assert_eq!(both.stdout, "out\n");
    assert_eq!(both.stderr, "err\n");
    assert_eq!(both.exit_code, 0);

    // Each argument as given: no shell splits or globs it.
    let argv = run(&mut client, &["echo", "two  spaces", "*", "$GREETING"]).await;
    assert_eq!(argv.stdout, "two  spaces * $GREETING\n");
    // The container's environment, user and working directory.
    let env = run(&mut client, &["sh", "-c", "echo $GREETING; id -u; pwd"]).await;
    assert_eq!(env.stdout, "hello\n1000\n/\n");

    let three = run(&mut client, &["sh", "-c", "exit 3"]).await;
    assert_eq!((three.stdout.as_str(), three.exit_code), ("", 3));
    let killed = run(&mut client, &["sh", "-c", "kill -KILL $$"]).await;
    assert_eq!(killed.exit_code, 137);
    // Output larger than a pipe, all of it, written just before the exit.
    let large = run(
        &mut client,
        &["sh", "-c", "yes 0123456789 | head -c 300000"],
    )
    .await;
    assert_eq!(large.stdout.len(), 300_000);
    assert_eq!(large.exit_code, 0);

    // A command that cannot start is the caller's mistake, in containerd's words.
    let missing = Session::open(
        &mut client,
        start(&["no-such-tool", "x"], false, false, None),
    )
    .await
    .err()
    .unwrap();
    assert_eq!(missing.code(), Code::InvalidArgument, "{missing}");
    assert!(missing.message().contains("no-such-tool"), "{missing}");
    assert_eq!(node.exec_dirs(), Vec::<String>::new());
    // …and leaves the container able to exec.
    assert_eq!(run(&mut client, &["true"]).await.exit_code, 0);

    for (group, container) in [("nope", CONTAINER), (GROUP, "nope")] {
        let mut unknown = start(&["true"], false, false, None);
        unknown.group_id = group.into();
        unknown.container = container.into();
        let status = Session::open(&mut client, unknown).await.err().unwrap();
        assert_eq!(status.code(), Code::NotFound, "{status}");
    }
    node.finish().await;
}

#[tokio::test]
async fn exec_takes_stdin_and_runs_on_a_terminal_that_resizes() {
    let node = Node::start(&["sleep", "3600"], Some(1000)).await;
    let mut client = node.client().await;

    // stdin reaches the process as it is sent; its end is the end of file.
    let mut cat = Session::open(&mut client, start(&["cat"], false, true, None))
        .await
        .unwrap();
    let mut echoed = String::new();
    cat.send(exec_input::Input::Stdin(b"hello\n".to_vec()))
        .await;
    cat.expect_stdout(&mut echoed, "hello\n").await;
    cat.send(exec_input::Input::Stdin(b"world".to_vec())).await;
    cat.send(exec_input::Input::CloseStdin(true)).await;
    let end = cat.outcome().await;
    assert_eq!(format!("{echoed}{}", end.stdout), "hello\nworld");
    assert_eq!(end.exit_code, 0);

    // Without stdin, the process reads end of file at once.
    let nothing = run(&mut client, &["cat"]).await;
    assert_eq!((nothing.stdout.as_str(), nothing.exit_code), ("", 0));

    // More stdin than a pipe holds.
    let big = Session::open(&mut client, start(&["wc", "-c"], false, true, None))
        .await
        .unwrap();
    for _ in 0..10 {
        big.send(exec_input::Input::Stdin(vec![b'x'; 100_000]))
            .await;
    }
    big.send(exec_input::Input::CloseStdin(true)).await;
    let counted = big.outcome().await;
    assert_eq!(counted.stdout.trim(), "1000000");

    // A terminal of the size asked for; everything comes as stdout.
    let size = Session::open(
        &mut client,
        start(&["stty", "size"], true, false, Some((24, 80))),
    )
    .await
    .unwrap()
    .outcome()
    .await;
    assert_eq!(size.stdout, "24 80\r\n");
    assert_eq!((size.stderr.as_str(), size.exit_code), ("", 0));

    // An interactive shell on it, resized meanwhile.
    let mut shell = Session::open(&mut client, start(&["sh"], true, true, Some((24, 80))))
        .await
        .unwrap();
    let mut screen = String::new();
    shell
        .send(exec_input::Input::Stdin(b"stty size >&2\n".to_vec()))
        .await;
    shell.expect_stdout(&mut screen, "24 80").await;
    shell
        .send(exec_input::Input::Resize(TerminalSize {
            rows: 40,
            cols: 100,
        }))
        .await;
    shell
        .send(exec_input::Input::Stdin(b"stty size\n".to_vec()))
        .await;
    shell.expect_stdout(&mut screen, "40 100").await;
    shell
        .send(exec_input::Input::Stdin(b"exit 5\n".to_vec()))
        .await;
    let end = shell.outcome().await;
    assert_eq!((end.stderr.as_str(), end.exit_code), ("", 5));
    node.finish().await;
}

#[tokio::test]
async fn a_caller_that_goes_away_has_its_process_killed() {
    let node = Node::start(&["sleep", "3600"], None).await;
    let mut client = node.client().await;
    let plain = ["sleep", "86401"];
    let on_tty = ["sleep", "86402"];
    let mut sessions = Vec::new();
    for (argv, tty) in [(plain, false), (on_tty, true)] {
        let session = Session::open(&mut client, start(&argv, tty, true, Some((24, 80))))
            .await
            .unwrap();
        assert_eq!(
            until_running(&argv).await,
            vec![i32::try_from(session.pid).unwrap()]
        );
        sessions.push(session);
    }
    assert_eq!(node.exec_dirs().len(), 2);

    // Ending the requests cleanly is the end of stdin, not going away: the processes run on.
    let mut sessions = sessions.into_iter();
    let first = sessions.next().unwrap();
    drop(first.input);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(processes(&plain).len(), 1, "killed at the end of stdin");
    // Not reading the answer any more is.
    drop(first.output);
    until_gone(&plain).await;
    // So is dropping the whole call.
    drop(sessions.next());
    until_gone(&on_tty).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !node.exec_dirs().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            node.exec_dirs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The container itself runs on.
    assert_eq!(run(&mut client, &["true"]).await.exit_code, 0);
    node.finish().await;
}

#[tokio::test]
async fn a_restarted_agent_kills_the_exec_processes_it_finds_left() {
    let node = Node::start(&["sleep", "3600"], None).await;
    let argv = ["sleep", "86403"];
    let command = start(&argv, false, true, None);
    // The exec of an agent that is about to be replaced.
    let mut left = node.runtime.exec(&command).await.unwrap();
    assert_eq!(until_running(&argv).await.len(), 1);
    assert_eq!(node.exec_dirs().len(), 1);

    let restarted = ContainerdRuntime::start(node.config.clone(), &node.state, Changes::default())
        .await
        .unwrap();
    until_gone(&argv).await;
    // Killed, as the old agent's side of it sees.
    let mut last = None;
    while let Some(output) = tokio::time::timeout(PATIENCE, left.output.recv())
        .await
        .unwrap()
    {
        last = Some(output);
    }
    assert_eq!(last, Some(ProcessOutput::Exited(137)));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !node.exec_dirs().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            node.exec_dirs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The container itself was adopted, not touched.
    let status = restarted.status(GROUP).unwrap();
    assert_eq!(status.phase(), GroupPhase::Running, "{status:?}");

    restarted.remove(GROUP).await.unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while restarted.status(GROUP).is_some() {
        assert!(tokio::time::Instant::now() < deadline, "never removed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    node.finish().await;
}

#[tokio::test]
async fn a_stopped_container_refuses_exec_and_its_followed_log_ends() {
    // Root: writing to the container's stdout pipe through /proc needs its owner.
    let node = Node::start(
        &[
            "sh",
            "-c",
            "exec 2>/dev/null; trap 'echo bye; exit 0' TERM; echo one; while :; do sleep 1; done",
        ],
        None,
    )
    .await;
    let mut client = node.client().await;
    let logs = |since: Option<i64>, follow: bool| LogsRequest {
        group_id: GROUP.into(),
        container: CONTAINER.into(),
        tail: None,
        timestamps: false,
        follow,
        previous: false,
        since_unix_ms: since,
    };
    // The container's own output: a process writes to its stdout.
    let log = |text: &str| format!("echo {text} > /proc/1/fd/1");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while read_all(&mut client, logs(None, false)).await.unwrap() != "one\n" {
        assert!(tokio::time::Instant::now() < deadline, "`one` never logged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    tokio::time::sleep(Duration::from_millis(20)).await;
    let since = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    assert_eq!(
        run(&mut client, &["sh", "-c", &log("two")]).await.exit_code,
        0
    );
    let mut stream = client
        .logs(logs(Some(since), true))
        .await
        .unwrap()
        .into_inner();
    let mut got = String::new();
    expect(&mut stream, &mut got, "two\n").await;
    assert_eq!(
        run(&mut client, &["sh", "-c", &log("three")])
            .await
            .exit_code,
        0
    );
    expect(&mut stream, &mut got, "three\n").await;
    let read = read_all(&mut client, logs(Some(since), false))
        .await
        .unwrap();
    assert_eq!(read, "two\nthree\n");

    // Stopped: the container's last words arrive, then the followed log ends.
    node.runtime.stop(&node.assignment).await.unwrap();
    node.wait_phase(GroupPhase::Stopped).await;
    assert!(until_end(&mut stream, &mut got).await.is_some(), "{got:?}");
    assert_eq!(got, "two\nthree\nbye\n");

    let status = Session::open(&mut client, start(&["true"], false, false, None))
        .await
        .err()
        .unwrap();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status}");
    node.finish().await;
}

/// Keystroke round trips through `AgentService` (what the apiserver sees): one byte of stdin to a
/// terminal whose line discipline echoes it, and to `cat` without a terminal. Run with
/// `cargo test -p berth-node-agent --release bench_exec -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn bench_exec_keystroke_round_trip() {
    let node = Node::start(&["sleep", "3600"], None).await;
    let mut client = node.client().await;
    for (label, tty) in [("terminal echo", true), ("cat, no terminal", false)] {
        let mut session = Session::open(&mut client, start(&["cat"], tty, true, Some((24, 80))))
            .await
            .unwrap();
        let mut times = Vec::new();
        let mut received = String::new();
        for i in 0..300 {
            // `cat` without a terminal sees only whole reads: send a line.
            let key = if tty { "x" } else { "x\n" };
            let started = std::time::Instant::now();
            session
                .send(exec_input::Input::Stdin(key.as_bytes().to_vec()))
                .await;
            let want = key.repeat(i + 1);
            session.expect_stdout(&mut received, &want).await;
            times.push(started.elapsed());
        }
        times.sort();
        let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
        eprintln!(
            "{label}: p50 {:?}, p90 {:?}, p99 {:?}, max {:?}",
            at(0.5),
            at(0.9),
            at(0.99),
            times[times.len() - 1]
        );
        drop(session);
    }
    node.finish().await;
}
