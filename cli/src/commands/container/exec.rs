//! `berth container exec`.

use std::io::{IsTerminal as _, Read as _};

use anyhow::Context as _;
use berth_proto::arm::ContainerExecResponse;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt as _, StreamExt as _};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::CommandExit;
use crate::cli::ExecArgs;
use crate::client::WebSocket;
use crate::commands::Context;
use crate::commands::container::{container_path, emit};
use crate::session::{self, Outcome, ServerFrame, SessionError};
use crate::terminal::{EndRequests, RawMode, WindowChanges, WindowSize};

/// How much of stdin one frame carries at most.
const STDIN_CHUNK: usize = 32 * 1024;

/// The body of `POST …/exec`: ACI's, with Berth's exact argv, `tty` and `stdin`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ExecRequest<'a> {
    command: &'a [String],
    tty: bool,
    stdin: bool,
    terminal_size: TerminalSize,
}

#[derive(Debug, Serialize)]
struct TerminalSize {
    rows: u16,
    cols: u16,
}

/// POSTs `exec`, then runs the session on the websocket it answers with: stdin out, stdout and
/// stderr in, until the server sends the command's status. A command that exits with N≠0 ends in a
/// [`CommandExit`] with code N, as `kubectl exec` does.
pub async fn exec(ctx: &Context, args: &ExecArgs) -> anyhow::Result<()> {
    let path = container_path(ctx, &args.target).await?;
    // A pipe or a file is the command's input; a terminal is only with -i.
    let forward_stdin = args.stdin || !std::io::stdin().is_terminal();
    let local_size = crate::terminal::window_size();
    let size = local_size.unwrap_or_default();
    let body = ExecRequest {
        command: &args.command,
        tty: args.tty,
        stdin: forward_stdin,
        terminal_size: TerminalSize {
            rows: size.rows,
            cols: size.cols,
        },
    };
    let answer: ContainerExecResponse = ctx
        .client
        .post(&format!("{path}/exec"), Some(&body))
        .await?
        .json()?;
    let socket = ctx
        .client
        .websocket(
            &answer.web_socket_uri,
            &format!("Bearer {}", answer.password),
            Some(session::PROTOCOL),
        )
        .await?;

    // With -it on a terminal every key goes to the command as typed, Ctrl-C included. The guard
    // puts the terminal back however the session ends.
    let raw = if args.tty && args.stdin {
        RawMode::enable().context("cannot put the terminal in raw mode")?
    } else {
        None
    };
    let outcome = run(socket, forward_stdin, args.tty && local_size.is_some()).await;
    drop(raw);
    match outcome? {
        Outcome::Exited(0) => Ok(()),
        Outcome::Exited(code) => Err(CommandExit {
            code,
            message: format!("command terminated with exit code {code}"),
        }
        .into()),
        Outcome::Failed(message) => Err(SessionError::Failed(message).into()),
    }
}

/// Runs one session: a writer task sends what the stdin thread and the resize watcher queue, while
/// this task prints what arrives.
async fn run(socket: WebSocket, forward_stdin: bool, resize: bool) -> anyhow::Result<Outcome> {
    let mut end_requests = EndRequests::listen().context("cannot listen for signals")?;
    let window_changes = if resize {
        Some(WindowChanges::listen().context("cannot listen for window size changes")?)
    } else {
        None
    };
    let (sink, mut frames) = socket.split();
    let (queue, queued) = mpsc::channel(16);
    let writer = tokio::spawn(send_frames(sink, queued));
    if forward_stdin {
        read_stdin(queue.clone()).context("cannot start reading stdin")?;
    }
    let resizer = window_changes.map(|changes| tokio::spawn(send_sizes(queue.clone(), changes)));
    drop(queue);

    let outcome = receive(&mut frames, &mut end_requests).await;
    writer.abort();
    if let Some(resizer) = resizer {
        resizer.abort();
    }
    outcome
}

/// Prints stdout and stderr frames as they arrive until the server closes, and returns the status.
/// A signal that ends the process ends the session first.
async fn receive(
    frames: &mut SplitStream<WebSocket>,
    end_requests: &mut EndRequests,
) -> anyhow::Result<Outcome> {
    let mut outcome = None;
    loop {
        let frame = tokio::select! {
            frame = frames.next() => frame,
            code = end_requests.requested() => {
                return Err(CommandExit { code, message: String::new() }.into());
            }
        };
        match frame {
            // Reading on after a close frame sends the answer to it; then the stream ends.
            None => break,
            Some(Ok(Message::Binary(data))) => match ServerFrame::parse(&data) {
                ServerFrame::Stdout(bytes) => emit(&mut std::io::stdout(), bytes, "stdout")?,
                ServerFrame::Stderr(bytes) => emit(&mut std::io::stderr(), bytes, "stderr")?,
                ServerFrame::Status(status) => outcome = Some(session::outcome(status)?),
                ServerFrame::Other => {}
            },
            Some(Ok(Message::Close(frame))) => {
                if outcome.is_none()
                    && let Some(e) = session::close_error(frame.as_ref())
                {
                    return Err(e.into());
                }
            }
            Some(Ok(_)) => {}
            // Once the status is in, how the connection ends does not matter.
            Some(Err(_)) if outcome.is_some() => break,
            Some(Err(e)) => return Err(SessionError::Broken(Box::new(e)).into()),
        }
    }
    outcome.ok_or_else(|| SessionError::NoStatus.into())
}

/// Sends the queued frames, in order. A failure ends it; the reader then sees the broken connection.
async fn send_frames(mut sink: SplitSink<WebSocket, Message>, mut queued: mpsc::Receiver<Vec<u8>>) {
    while let Some(frame) = queued.recv().await {
        if sink.send(Message::Binary(frame.into())).await.is_err() {
            return;
        }
    }
}

/// Reads stdin on a thread of its own (a blocking read that no runtime has to wait for at exit) and
/// queues each read as one frame, at once; at the end of stdin, queues `[255, 0]`.
fn read_stdin(queue: mpsc::Sender<Vec<u8>>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("stdin".to_owned())
        .spawn(move || {
            let mut stdin = std::io::stdin();
            let mut buf = vec![0; STDIN_CHUNK];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if queue.blocking_send(session::stdin(&buf[..n])).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    // An unreadable stdin ends like an empty one.
                    Err(_) => break,
                }
            }
            let _ = queue.blocking_send(session::END_OF_STDIN.to_vec());
        })
        .map(drop)
}

/// Queues the terminal's size now (as Kubernetes' clients do) and after every change of it.
async fn send_sizes(queue: mpsc::Sender<Vec<u8>>, mut changes: WindowChanges) {
    let mut sent: Option<WindowSize> = None;
    loop {
        if let Some(size) = crate::terminal::window_size()
            && sent != Some(size)
        {
            if queue
                .send(session::resize(size.rows, size.cols))
                .await
                .is_err()
            {
                return;
            }
            sent = Some(size);
        }
        if changes.changed().await.is_none() {
            return;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_body_is_the_exact_argv() {
        let command = vec!["sh".to_owned(), "-c".to_owned(), "echo a  b".to_owned()];
        let body = ExecRequest {
            command: &command,
            tty: false,
            stdin: true,
            terminal_size: TerminalSize { rows: 24, cols: 80 },
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({"command": ["sh", "-c", "echo a  b"], "tty": false, "stdin": true,
                   "terminalSize": {"rows": 24, "cols": 80}})
        );
    }
}
