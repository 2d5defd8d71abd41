//! The channel protocol of `exec` sessions: Kubernetes' `v5.channel.k8s.io` (and `v4`), which the
//! apiserver speaks on `/exec/{id}` and `berth container exec` speaks to it.
//!
//! Every frame is binary, its first byte the [`channel`], the rest the payload. The client sends
//! stdin on [`channel::STDIN`], the terminal's size on [`channel::RESIZE`] (JSON [`Resize`]) and,
//! under v5 only, [`END_OF_STDIN`]; the server sends stdout, stderr and, last, how the command ended
//! as Kubernetes' `metav1.Status` JSON ([`Status`]) on [`channel::STATUS`], then closes. ACI's own
//! protocol (no subprotocol: raw bytes both ways) and `attach` have no channels.

use serde::{Deserialize, Serialize};

/// A version of the protocol, as a websocket subprotocol names it. v5 adds closing stdin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V4,
    V5,
}

impl Version {
    /// The versions a server accepts, the newest first.
    pub const ALL: [Version; 2] = [Version::V5, Version::V4];

    /// The websocket subprotocol.
    pub const fn protocol(self) -> &'static str {
        match self {
            Version::V4 => "v4.channel.k8s.io",
            Version::V5 => "v5.channel.k8s.io",
        }
    }

    /// The version a subprotocol names, if it is one of these.
    pub fn from_protocol(protocol: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.protocol() == protocol)
    }
}

/// The websocket subprotocol of the newest version, the one the CLI asks for.
pub const PROTOCOL: &str = Version::V5.protocol();

/// The channels: the first byte of every frame.
pub mod channel {
    /// Client to server: stdin bytes.
    pub const STDIN: u8 = 0;
    /// Server to client: stdout (everything, with a TTY).
    pub const STDOUT: u8 = 1;
    /// Server to client: stderr (only without a TTY).
    pub const STDERR: u8 = 2;
    /// Server to client: the final [`super::Status`] (Kubernetes calls it the error channel), then
    /// the server closes.
    pub const STATUS: u8 = 3;
    /// Client to server: the terminal's size, JSON [`super::Resize`].
    pub const RESIZE: u8 = 4;
    /// Client to server (v5): close the channel named by the one byte of payload.
    pub const CLOSE: u8 = 255;
}

/// The frame that ends stdin (v5).
pub const END_OF_STDIN: [u8; 2] = [channel::CLOSE, channel::STDIN];

/// The frame carrying `payload` on `channel`.
pub fn frame(channel: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(payload.len() + 1);
    frame.push(channel);
    frame.extend_from_slice(payload);
    frame
}

/// The payload of a [`channel::RESIZE`] frame: `{"Width": cols, "Height": rows}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Resize {
    pub width: u32,
    pub height: u32,
}

impl Resize {
    /// The frame telling the server this size.
    pub fn frame(self) -> Vec<u8> {
        let json = format!(r#"{{"Width":{},"Height":{}}}"#, self.width, self.height);
        frame(channel::RESIZE, json.as_bytes())
    }
}

/// One frame from the client, as the server reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFrame<'a> {
    Stdin(&'a [u8]),
    /// A new terminal size, both sides above zero.
    Resize(Resize),
    /// The client has no more stdin (v5 only).
    CloseStdin,
    /// Anything else (an unknown channel, a size that does not parse or has a zero side, an empty
    /// frame): ignored, as Kubernetes' servers do.
    Other,
}

impl<'a> ClientFrame<'a> {
    /// Reads one binary frame from a client speaking `version`.
    pub fn parse(version: Version, frame: &'a [u8]) -> Self {
        match frame.split_first() {
            Some((&channel::STDIN, payload)) => Self::Stdin(payload),
            Some((&channel::RESIZE, payload)) => match serde_json::from_slice::<Resize>(payload) {
                Ok(size) if size.width > 0 && size.height > 0 => Self::Resize(size),
                _ => Self::Other,
            },
            Some((&channel::CLOSE, [channel::STDIN, ..])) if version == Version::V5 => {
                Self::CloseStdin
            }
            _ => Self::Other,
        }
    }
}

/// One frame from the server, as the client reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerFrame<'a> {
    Stdout(&'a [u8]),
    Stderr(&'a [u8]),
    /// The payload of the [`channel::STATUS`] frame: [`Status`] JSON.
    Status(&'a [u8]),
    /// A channel this client does not know (ignored, as Kubernetes' clients do), or an empty frame.
    Other,
}

impl<'a> ServerFrame<'a> {
    /// Splits a frame into its channel and payload.
    pub fn parse(frame: &'a [u8]) -> Self {
        match frame.split_first() {
            Some((&channel::STDOUT, payload)) => Self::Stdout(payload),
            Some((&channel::STDERR, payload)) => Self::Stderr(payload),
            Some((&channel::STATUS, payload)) => Self::Status(payload),
            _ => Self::Other,
        }
    }
}

/// Kubernetes' `metav1.Status`, the parts that say how a command ended. Fields are in the order of
/// their names, so the JSON is the same as a `serde_json::Value`'s.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<StatusDetails>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default)]
    pub metadata: StatusMetadata,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// `metav1.ListMeta`: always empty here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusMetadata {}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusDetails {
    #[serde(default)]
    pub causes: Vec<StatusCause>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusCause {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// How the command ended, as a client reads a [`Status`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It ran and exited with this code (1 stands for a code no process can exit with).
    Exited(u8),
    /// It could not run, or ended in a way the server describes only in words.
    Failed(String),
}

impl Status {
    /// The status of a command that exited with `code`, as the kubelet writes it.
    pub fn exited(code: i32) -> Self {
        if code == 0 {
            return Self {
                status: Some("Success".to_owned()),
                ..Self::default()
            };
        }
        Self {
            details: Some(StatusDetails {
                causes: vec![StatusCause {
                    message: Some(code.to_string()),
                    reason: Some("ExitCode".to_owned()),
                }],
            }),
            message: Some(format!(
                "command terminated with non-zero exit code: {code}"
            )),
            reason: Some("NonZeroExitCode".to_owned()),
            status: Some("Failure".to_owned()),
            ..Self::default()
        }
    }

    /// The status of a command that could not run, in `message`'s words.
    pub fn failed(message: &str) -> Self {
        Self {
            message: Some(message.to_owned()),
            reason: Some("InternalError".to_owned()),
            status: Some("Failure".to_owned()),
            ..Self::default()
        }
    }

    /// Reads the status as kubectl does: `Success` is exit 0, `NonZeroExitCode` the code of its
    /// `ExitCode` cause, anything else a failure in the server's words.
    pub fn outcome(self) -> Outcome {
        if self.status.as_deref() == Some("Success") {
            return Outcome::Exited(0);
        }
        if self.reason.as_deref() == Some("NonZeroExitCode") {
            let code = self
                .details
                .iter()
                .flat_map(|d| &d.causes)
                .find(|c| c.reason.as_deref() == Some("ExitCode"))
                .and_then(|c| c.message.as_deref()?.trim().parse::<i64>().ok());
            if let Some(code) = code {
                // A process exits with 1..=255 when it fails; anything else still is a failure.
                let code = u8::try_from(code).ok().filter(|c| *c != 0).unwrap_or(1);
                return Outcome::Exited(code);
            }
        }
        let message = self
            .message
            .filter(|m| !m.is_empty())
            .or(self.reason)
            .unwrap_or_else(|| "the command failed and the server did not say why".to_owned());
        Outcome::Failed(message)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_named_by_their_subprotocol() {
        assert_eq!(PROTOCOL, "v5.channel.k8s.io");
        assert_eq!(Version::V4.protocol(), "v4.channel.k8s.io");
        assert_eq!(
            Version::from_protocol("v4.channel.k8s.io"),
            Some(Version::V4)
        );
        assert_eq!(
            Version::from_protocol("v5.channel.k8s.io"),
            Some(Version::V5)
        );
        assert_eq!(Version::from_protocol("v3.channel.k8s.io"), None);
        assert_eq!(Version::from_protocol("channel.k8s.io"), None);
    }

    #[test]
    fn frames_carry_their_channel_first() {
        assert_eq!(frame(channel::STDIN, b"hi\n"), b"\0hi\n");
        assert_eq!(END_OF_STDIN, [255, 0]);
        let size = Resize {
            width: 80,
            height: 24,
        };
        assert_eq!(size.frame(), b"\x04{\"Width\":80,\"Height\":24}");
        assert_eq!(
            frame(channel::STDOUT, b"x"),
            [1, b'x'],
            "stdout is channel 1"
        );
        assert_eq!(frame(channel::STDERR, b""), [2], "stderr is channel 2");
        assert_eq!(frame(channel::STATUS, b""), [3], "the status is channel 3");
    }

    #[test]
    fn client_frames_decode() {
        let v5 = |bytes: &'static [u8]| ClientFrame::parse(Version::V5, bytes);
        assert_eq!(v5(b"\x00hi"), ClientFrame::Stdin(b"hi"));
        assert_eq!(v5(b"\x00"), ClientFrame::Stdin(b""));
        assert_eq!(
            v5(b"\x04{\"Width\":100,\"Height\":40}"),
            ClientFrame::Resize(Resize {
                width: 100,
                height: 40
            })
        );
        assert_eq!(v5(b"\x04{\"Width\":0,\"Height\":40}"), ClientFrame::Other);
        assert_eq!(v5(b"\x04{\"Width\":-1,\"Height\":40}"), ClientFrame::Other);
        assert_eq!(v5(b"\x04not json"), ClientFrame::Other);
        assert_eq!(v5(&END_OF_STDIN), ClientFrame::CloseStdin);
        assert_eq!(v5(&[255, 1]), ClientFrame::Other, "only stdin closes");
        assert_eq!(v5(&[255]), ClientFrame::Other);
        assert_eq!(
            ClientFrame::parse(Version::V4, &END_OF_STDIN),
            ClientFrame::Other,
            "v4 cannot close stdin"
        );
        assert_eq!(v5(b""), ClientFrame::Other);
        assert_eq!(v5(b"\x01out"), ClientFrame::Other);
        // What a client writes, a server reads.
        let size = Resize {
            width: 7,
            height: 3,
        };
        let written = size.frame();
        assert_eq!(
            ClientFrame::parse(Version::V5, &written),
            ClientFrame::Resize(size)
        );
    }

    #[test]
    fn server_frames_decode() {
        assert_eq!(ServerFrame::parse(b"\x01out"), ServerFrame::Stdout(b"out"));
        assert_eq!(ServerFrame::parse(b"\x02err"), ServerFrame::Stderr(b"err"));
        assert_eq!(ServerFrame::parse(b"\x03{}"), ServerFrame::Status(b"{}"));
        assert_eq!(ServerFrame::parse(b"\x01"), ServerFrame::Stdout(b""));
        assert_eq!(ServerFrame::parse(b"\x07x"), ServerFrame::Other);
        assert_eq!(ServerFrame::parse(b""), ServerFrame::Other);
    }

    #[test]
    fn statuses_are_written_as_the_kubelet_writes_them() {
        let json = |status: Status| serde_json::to_string(&status).unwrap();
        assert_eq!(
            json(Status::exited(0)),
            r#"{"metadata":{},"status":"Success"}"#
        );
        assert_eq!(
            json(Status::exited(7)),
            r#"{"details":{"causes":[{"message":"7","reason":"ExitCode"}]},"message":"command terminated with non-zero exit code: 7","metadata":{},"reason":"NonZeroExitCode","status":"Failure"}"#
        );
        assert_eq!(
            json(Status::failed("no such executable: nope")),
            r#"{"message":"no such executable: nope","metadata":{},"reason":"InternalError","status":"Failure"}"#
        );
    }

    #[test]
    fn statuses_become_exit_codes() {
        let outcome = |json: &str| serde_json::from_str::<Status>(json).unwrap().outcome();
        assert_eq!(
            outcome(r#"{"metadata":{},"status":"Success"}"#),
            Outcome::Exited(0)
        );
        let failed = |code: &str| {
            format!(
                r#"{{"metadata":{{}},"status":"Failure","message":"command terminated with non-zero exit code: {code}","reason":"NonZeroExitCode","details":{{"causes":[{{"reason":"ExitCode","message":"{code}"}}]}}}}"#
            )
        };
        assert_eq!(outcome(&failed("7")), Outcome::Exited(7));
        assert_eq!(outcome(&failed("255")), Outcome::Exited(255));
        assert_eq!(outcome(&failed("0")), Outcome::Exited(1));
        assert_eq!(outcome(&failed("256")), Outcome::Exited(1));
        assert_eq!(
            outcome(&failed("x")),
            Outcome::Failed("command terminated with non-zero exit code: x".into())
        );
        assert_eq!(
            outcome(r#"{"status":"Failure","reason":"InternalError"}"#),
            Outcome::Failed("InternalError".into())
        );
        assert_eq!(
            outcome(r#"{}"#),
            Outcome::Failed("the command failed and the server did not say why".into())
        );
        // What a server writes, a client reads.
        for code in [0, 1, 42, 255] {
            let expected = Outcome::Exited(u8::try_from(code).unwrap());
            assert_eq!(Status::exited(code).outcome(), expected);
        }
        assert_eq!(Status::exited(-1).outcome(), Outcome::Exited(1));
        assert_eq!(
            Status::failed("gone").outcome(),
            Outcome::Failed("gone".into())
        );
    }
}
