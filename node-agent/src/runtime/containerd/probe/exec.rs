//! `exec` probes: the command run in the container as `berth container exec` runs one (the
//! container's own process spec, [`super::super::exec`]), without stdin or terminal, its output kept
//! up to [`MAX_OUTPUT`] bytes. Exit code 0 passes. A probe that outlives its timeout fails, and
//! dropping its process kills it (the exec session kills a process whose caller went away).

use std::path::Path;
use std::time::Duration;

use berth_proto::node::ExecStart;

use super::super::client::Containerd;
use super::super::exec;
use super::state::Outcome;
use crate::runtime::ProcessOutput;

/// The most of a probe's output kept (stdout and stderr together, in the order read); the rest is
/// read and dropped.
pub(super) const MAX_OUTPUT: usize = 4 * 1024;

/// Runs `command` in the task of containerd container `container_id`, within `timeout`.
pub(super) async fn run(
    cd: &Containerd,
    exec_root: &Path,
    container_id: &str,
    command: &[String],
    timeout: Duration,
) -> Outcome {
    let request = ExecStart {
        group_id: String::new(),
        container: container_id.to_string(),
        command: command.to_vec(),
        tty: false,
        stdin: false,
        size: None,
    };
    let attempt = async {
        let mut process = match exec::start(cd, exec_root, container_id, &request).await {
            Ok(process) => process,
            Err(error) => return Outcome::Fail(format!("the probe cannot start: {error}")),
        };
        // Held to the end: dropping the input side tells the session its caller went away.
        let _input = process.input;
        let mut output = Bounded::default();
        while let Some(message) = process.output.recv().await {
            match message {
                ProcessOutput::Stdout(data) | ProcessOutput::Stderr(data) => output.push(&data),
                ProcessOutput::Exited(0) => return Outcome::Pass(output.text()),
                ProcessOutput::Exited(code) => {
                    let text = output.text();
                    return Outcome::Fail(if text.is_empty() {
                        format!("the probe command exited with code {code}")
                    } else {
                        text
                    });
                }
            }
        }
        Outcome::Fail("the probe command ended without an exit code".into())
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(outcome) => outcome,
        Err(_) => Outcome::Fail(format!(
            "the probe command timed out after {}s",
            timeout.as_secs_f64()
        )),
    }
}

/// Output kept up to [`MAX_OUTPUT`] bytes.
#[derive(Debug, Default)]
struct Bounded {
    bytes: Vec<u8>,
    cut: bool,
}

impl Bounded {
    fn push(&mut self, data: &[u8]) {
        let room = MAX_OUTPUT - self.bytes.len();
        if data.len() > room {
            self.cut = true;
        }
        self.bytes.extend_from_slice(&data[..data.len().min(room)]);
    }

    /// The output as text (invalid UTF-8 replaced, surrounding blank space trimmed; a cut says so).
    fn text(&self) -> String {
        let text = String::from_utf8_lossy(&self.bytes);
        let text = text.trim();
        if self.cut {
            format!("{text}… (output cut at {MAX_OUTPUT} bytes)")
        } else {
            text.to_string()
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn output_is_kept_up_to_the_bound_and_says_when_cut() {
        let mut small = Bounded::default();
        small.push(b"  not ");
        small.push(b"healthy\n");
        assert_eq!(small.text(), "not healthy");

        let mut big = Bounded::default();
        big.push(&vec![b'a'; MAX_OUTPUT - 1]);
        big.push(b"bcd");
        big.push(b"efg");
        assert_eq!(big.bytes.len(), MAX_OUTPUT);
        assert!(big.bytes.ends_with(b"ab"));
        assert!(
            big.text()
                .ends_with(&format!("(output cut at {MAX_OUTPUT} bytes)"))
        );

        let mut binary = Bounded::default();
        binary.push(&[0xff, b'o', b'k']);
        assert_eq!(binary.text(), "\u{fffd}ok");
    }
}
