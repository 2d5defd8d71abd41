//! The websocket sessions of `exec` and `attach`.
//!
//! `exec` speaks Kubernetes' channel protocol ([`berth_proto::exec`], subprotocol [`PROTOCOL`]): the
//! client sends stdin, the window size and, at the end of stdin, [`END_OF_STDIN`]; the server sends
//! stdout, stderr and, last, the command's status, which [`outcome`] reads. `attach` has no framing:
//! every binary frame is output.

use berth_proto::exec::{self, Resize, Status};
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

pub use berth_proto::exec::{END_OF_STDIN, Outcome, PROTOCOL, ServerFrame, channel};

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

/// The frame carrying `bytes` of stdin.
pub fn stdin(bytes: &[u8]) -> Vec<u8> {
    exec::frame(channel::STDIN, bytes)
}

/// The frame telling the server the terminal's size.
pub fn resize(rows: u16, cols: u16) -> Vec<u8> {
    Resize {
        width: cols.into(),
        height: rows.into(),
    }
    .frame()
}

/// Reads the status frame's payload ([`Status::outcome`]).
pub fn outcome(payload: &[u8]) -> Result<Outcome, SessionError> {
    let status: Status = serde_json::from_slice(payload).map_err(SessionError::Status)?;
    Ok(status.outcome())
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
    }

    #[test]
    fn statuses_become_exit_codes() {
        assert_eq!(
            outcome(br#"{"metadata":{},"status":"Success"}"#).unwrap(),
            Outcome::Exited(0)
        );
        assert_eq!(
            outcome(br#"{"metadata":{},"status":"Failure","message":"no such executable: nope","reason":"InternalError"}"#).unwrap(),
            Outcome::Failed("no such executable: nope".into())
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
