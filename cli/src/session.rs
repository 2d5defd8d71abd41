//! The websocket sessions of `exec` and `attach`.
//!
//! `exec` speaks Kubernetes' channel framing (subprotocol [`PROTOCOL`]): every frame is binary, its
//! first byte the channel, the rest the payload. The client sends stdin on [`channel::STDIN`], the
//! window size on [`channel::RESIZE`] and `[255, 0]` at the end of stdin; the server sends stdout,
//! stderr and, last, the command's status as Kubernetes' `metav1.Status` JSON on [`channel::STATUS`],
//! which [`outcome`] reads. `attach` has no framing: every binary frame is output.

use serde::Deserialize;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// The websocket subprotocol of `exec`.
pub const PROTOCOL: &str = "v5.channel.k8s.io";

/// The channels of [`PROTOCOL`].
pub mod channel {
    /// Client to server: stdin bytes.
    pub const STDIN: u8 = 0;
    /// Server to client: stdout (everything, with a TTY).
    pub const STDOUT: u8 = 1;
    /// Server to client: stderr (only without a TTY).
    pub const STDERR: u8 = 2;
    /// Server to client: the final status, then the server closes.
    pub const STATUS: u8 = 3;
    /// Client to server: the terminal's size, JSON `{"Width": cols, "Height": rows}`.
    pub const RESIZE: u8 = 4;
    /// Client to server: close the channel named by the one byte of payload.
    pub const CLOSE: u8 = 255;
}

/// The frame that ends stdin.
pub const END_OF_STDIN: [u8; 2] = [channel::CLOSE, channel::STDIN];

/// What can end a session badly.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The command could not run (no such executable, the container is not running…): the server's
    /// words.
    #[error("{0}")]
    Failed(String),
    /// The status frame is not `metav1.Status` JSON.
    #[error("the server sent an unreadable exit status")]
    Status(#[source] serde_json::Error),
    /// The server ended the session without saying how the command ended.
    #[error("the server ended the session without the command's exit status")]
    NoStatus,
    /// The server closed the session with an error code (1008: the password was refused).
    #[error("the server closed the session: {reason} (websocket close code {code})")]
    Closed { code: u16, reason: String },
    /// The connection broke off.
    #[error("the session broke off")]
    Broken(#[source] Box<tungstenite::Error>),
}

impl SessionError {
    /// The close code of a [`SessionError::Closed`] that means "not allowed" (policy violation).
    pub const POLICY_VIOLATION: u16 = 1008;
}

/// One frame from the server of an `exec` session.
#[derive(Debug, PartialEq, Eq)]
pub enum Output<'a> {
    Stdout(&'a [u8]),
    Stderr(&'a [u8]),
    Status(&'a [u8]),
    /// A channel this client does not know (ignored, as Kubernetes' clients do), or an empty frame.
    Other,
}

/// Splits a frame into its channel and payload.
pub fn parse(frame: &[u8]) -> Output<'_> {
    match frame.split_first() {
        Some((&channel::STDOUT, payload)) => Output::Stdout(payload),
        Some((&channel::STDERR, payload)) => Output::Stderr(payload),
        Some((&channel::STATUS, payload)) => Output::Status(payload),
        _ => Output::Other,
    }
}

/// The frame carrying `bytes` of stdin.
pub fn stdin(bytes: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(bytes.len() + 1);
    frame.push(channel::STDIN);
    frame.extend_from_slice(bytes);
    frame
}

/// The frame telling the server the terminal's size.
pub fn resize(rows: u16, cols: u16) -> Vec<u8> {
    let mut frame = vec![channel::RESIZE];
    frame.extend_from_slice(format!(r#"{{"Width":{cols},"Height":{rows}}}"#).as_bytes());
    frame
}

/// How the command ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It ran and exited with this code (1 stands for a code no process can exit with).
    Exited(u8),
    /// It could not run, or ended in a way the server describes only in words.
    Failed(String),
}

/// Kubernetes' `metav1.Status`, the parts that say how a command ended.
#[derive(Debug, Deserialize)]
struct Status {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    details: Option<StatusDetails>,
}

#[derive(Debug, Deserialize)]
struct StatusDetails {
    #[serde(default)]
    causes: Vec<StatusCause>,
}

#[derive(Debug, Deserialize)]
struct StatusCause {
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// Reads the status frame's payload as kubectl does: `Success` is exit 0, `NonZeroExitCode` the code
/// of its `ExitCode` cause, anything else a failure in the server's words.
pub fn outcome(payload: &[u8]) -> Result<Outcome, SessionError> {
    let status: Status = serde_json::from_slice(payload).map_err(SessionError::Status)?;
    if status.status.as_deref() == Some("Success") {
        return Ok(Outcome::Exited(0));
    }
    if status.reason.as_deref() == Some("NonZeroExitCode") {
        let code = status
            .details
            .iter()
            .flat_map(|d| &d.causes)
            .find(|c| c.reason.as_deref() == Some("ExitCode"))
            .and_then(|c| c.message.as_deref()?.trim().parse::<i64>().ok());
        if let Some(code) = code {
            // A process exits with 1..=255 when it fails; anything else still is a failure.
            let code = u8::try_from(code).ok().filter(|c| *c != 0).unwrap_or(1);
            return Ok(Outcome::Exited(code));
        }
    }
    let message = status
        .message
        .filter(|m| !m.is_empty())
        .or(status.reason)
        .unwrap_or_else(|| "the command failed and the server did not say why".to_owned());
    Ok(Outcome::Failed(message))
}

/// The error a close frame stands for, if any: codes other than normal closure and going away.
pub fn close_error(frame: Option<&CloseFrame>) -> Option<SessionError> {
    let frame = frame?;
    match frame.code {
        CloseCode::Normal | CloseCode::Away => None,
        code => Some(SessionError::Closed {
            code: code.into(),
            reason: if frame.reason.is_empty() {
                "no reason given".to_owned()
            } else {
                frame.reason.to_string()
            },
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_their_channel_first() {
        assert_eq!(stdin(b"hi\n"), b"\0hi\n");
        assert_eq!(END_OF_STDIN, [255, 0]);
        assert_eq!(resize(24, 80), b"\x04{\"Width\":80,\"Height\":24}");
        assert_eq!(parse(b"\x01out"), Output::Stdout(b"out"));
        assert_eq!(parse(b"\x02err"), Output::Stderr(b"err"));
        assert_eq!(parse(b"\x03{}"), Output::Status(b"{}"));
        assert_eq!(parse(b"\x01"), Output::Stdout(b""));
        assert_eq!(parse(b"\x07x"), Output::Other);
        assert_eq!(parse(b""), Output::Other);
    }

    #[test]
    fn statuses_become_exit_codes() {
        assert_eq!(
            outcome(br#"{"metadata":{},"status":"Success"}"#).unwrap(),
            Outcome::Exited(0)
        );
        let failed = |code: &str| {
            format!(
                r#"{{"metadata":{{}},"status":"Failure","message":"command terminated with non-zero exit code: {code}","reason":"NonZeroExitCode","details":{{"causes":[{{"reason":"ExitCode","message":"{code}"}}]}}}}"#
            )
        };
        assert_eq!(outcome(failed("7").as_bytes()).unwrap(), Outcome::Exited(7));
        assert_eq!(
            outcome(failed("255").as_bytes()).unwrap(),
            Outcome::Exited(255)
        );
        assert_eq!(outcome(failed("0").as_bytes()).unwrap(), Outcome::Exited(1));
        assert_eq!(
            outcome(failed("256").as_bytes()).unwrap(),
            Outcome::Exited(1)
        );
        assert_eq!(
            outcome(failed("x").as_bytes()).unwrap(),
            Outcome::Failed("command terminated with non-zero exit code: x".into())
        );
        assert_eq!(
            outcome(br#"{"metadata":{},"status":"Failure","message":"no such executable: nope","reason":"InternalError"}"#).unwrap(),
            Outcome::Failed("no such executable: nope".into())
        );
        assert_eq!(
            outcome(br#"{"status":"Failure","reason":"InternalError"}"#).unwrap(),
            Outcome::Failed("InternalError".into())
        );
        assert!(matches!(outcome(b"exit 0"), Err(SessionError::Status(_))));
    }

    #[test]
    fn only_abnormal_closes_are_errors() {
        let close = |code: u16, reason: &str| CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        };
        assert!(close_error(None).is_none());
        assert!(close_error(Some(&close(1000, "exit code 0"))).is_none());
        assert!(close_error(Some(&close(1001, ""))).is_none());
        let err = close_error(Some(&close(1008, "invalid or expired password"))).unwrap();
        assert!(matches!(err, SessionError::Closed { code: 1008, .. }));
        assert_eq!(
            err.to_string(),
            "the server closed the session: invalid or expired password (websocket close code 1008)"
        );
    }
}
