//! A container's logs, exec and attach: ACI's routes, proxied to the node's agent over mutual TLS.
//!
//! - `GET …/logs`: ACI's `{"content"}` (with Berth's `previous` and `since`), or with `follow=true` a
//!   streamed `text/plain` body.
//! - `POST …/exec` and `POST …/attach` hand out a single-use session (see [`crate::exec`]): a `wss://`
//!   URL on this server and a password. The websocket (`/exec/{id}`, `/attach/{id}`) speaks ACI's
//!   protocol (password as the first text frame, raw binary frames both ways, close on exit) unless
//!   the client offers Kubernetes' `v5.channel.k8s.io` / `v4.channel.k8s.io` subprotocol: then frames
//!   carry a channel byte (stdin, stdout, stderr, status, resize, close) and the exit code comes last
//!   ([`berth_proto::exec`], which the CLI speaks too).
//!   README's "Exec, attach and logs" has the whole protocol.

use std::collections::HashMap;
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use berth_proto::arm;
use berth_proto::exec::{self, ClientFrame, Status, Version, channel};
use berth_proto::node::{
    ExecInput, ExecOutput, ExecStart, LogsRequest, TerminalSize, exec_input, exec_output,
};
use futures::{SinkExt as _, StreamExt as _};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::extract::{ArmJson, RawBody, parse};
use super::groups::{base_url, load};
use crate::agents::{AgentCallError, ExecCall};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::exec::{OpenError, Refused, Session, SessionKind};
use crate::store::{Desired, GroupKey, GroupRecord};
use crate::{AppState, now_ms};

type ContainerPath = Path<(String, String, String, String)>;
type Q = Query<HashMap<String, String>>;

/// Kubernetes' way of carrying a bearer token in a subprotocol, for clients that cannot set headers.
const BEARER_PROTOCOL: &str = "base64url.bearer.authorization.k8s.io.";

/// How long an ACI client has to send its password after connecting.
const PASSWORD_WAIT: Duration = Duration::from_secs(30);
/// The longest argv an exec may ask for, in bytes.
const MAX_COMMAND_BYTES: usize = 64 * 1024;
/// The largest terminal an exec may ask for.
const MAX_TERMINAL: i64 = 10_000;

/// The group and container of a logs, exec or attach request: the caller and the container are
/// checked like on every route (another tenant's group is a 404).
async fn load_container(
    state: &AppState,
    principal: &Principal,
    path: &(String, String, String, String),
    query: &HashMap<String, String>,
) -> Result<GroupRecord, ApiError> {
    let (sub, rg, name, container) = path;
    let group = load(
        state,
        principal,
        &(sub.clone(), rg.clone(), name.clone()),
        query,
    )
    .await?;
    let known = group.spec.containers.iter().any(|c| &c.name == container)
        || group
            .spec
            .init_containers
            .iter()
            .any(|c| &c.name == container);
    if !known {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "ContainerNotFound",
            format!("Container '{container}' is not part of container group '{name}'."),
        ));
    }
    Ok(group)
}

/// The node a group runs on and its agent's endpoint, or a 409 saying why it runs nowhere. `what`
/// finishes "… can be used once it runs", e.g. "container logs".
async fn placement(
    state: &AppState,
    group: &GroupRecord,
    what: &str,
) -> Result<(String, String), ApiError> {
    let (rg, name) = (&group.resource_group, &group.name);
    if group.desired == Desired::Stopped {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "ContainerGroupStopped",
            format!("Container Group '{name}' in resource group '{rg}' is stopped."),
        ));
    }
    let Some(node_id) = &group.node_id else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "ContainerGroupNotRunning",
            format!(
                "Container group '{name}' is not running on a node yet (provisioning state \
                 '{}'); {what} can be used once it runs.",
                group.provisioning_state.as_str()
            ),
        ));
    };
    let Some(endpoint) = state.gateway.agent_endpoint(node_id).await? else {
        let code = if what == "container logs" {
            "LogsNotAvailable"
        } else {
            "ExecNotAvailable"
        };
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            code,
            format!(
                "The node running container group '{name}' does not serve {what} (its agent \
                 advertises no agent service, e.g. a hollow node)."
            ),
        ));
    };
    Ok((node_id.clone(), endpoint))
}

/// The API error for a failed agent call about `container` of `group`.
fn agent_error(
    group: &GroupRecord,
    container: &str,
    what: &str,
    error: AgentCallError,
) -> ApiError {
    let name = &group.name;
    match error {
        AgentCallError::NotFound(_) => ApiError::new(
            StatusCode::CONFLICT,
            "ContainerGroupNotRunning",
            format!(
                "Container '{container}' of container group '{name}' has not started on its node \
                 yet; {what} can be used once it runs."
            ),
        ),
        AgentCallError::Unreachable { .. } | AgentCallError::TimedOut { .. } => {
            tracing::warn!(group = %group.id, error = %error_chain(&error), "cannot reach the node");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "NodeUnavailable",
                format!(
                    "The node running container group '{name}' cannot be reached; retry later."
                ),
            )
        }
        AgentCallError::Failed { source, .. }
            if source.code() == tonic::Code::FailedPrecondition =>
        {
            ApiError::new(
                StatusCode::CONFLICT,
                "ContainerNotRunning",
                format!("Container '{container}' of container group '{name}' is not running."),
            )
        }
        AgentCallError::Failed { source, .. } if source.code() == tonic::Code::InvalidArgument => {
            ApiError::bad_request("InvalidCommand", "command", source.message().to_owned())
        }
        AgentCallError::Failed { source, .. } if source.code() == tonic::Code::Unimplemented => {
            ApiError::new(
                StatusCode::CONFLICT,
                "ExecNotAvailable",
                format!(
                    "The node running container group '{name}' cannot run processes in its \
                     containers."
                ),
            )
        }
        error => {
            tracing::warn!(group = %group.id, error = %error_chain(&error), "the node failed a call");
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "NodeError",
                format!(
                    "The node running container group '{name}' failed to serve {what} of \
                     container '{container}'; retry later."
                ),
            )
        }
    }
}

/// `error` and its sources, joined with ": ", for the log.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

fn bool_param(query: &HashMap<String, String>, name: &str) -> Result<bool, ApiError> {
    match query.get(name).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(false),
        Some(value) if value == "true" => Ok(true),
        Some(value) if value == "false" => Ok(false),
        Some(value) => Err(ApiError::bad_request(
            "InvalidParameter",
            name,
            format!("The value '{value}' of parameter '{name}' is not 'true' or 'false'."),
        )),
    }
}

/// A `since` value: an RFC 3339 time, or a duration before now such as `30s`, `5m`, `1h30m`.
fn parse_since(value: &str, now_ms: i64) -> Option<i64> {
    let value = value.trim();
    if let Ok(time) = OffsetDateTime::parse(value, &Rfc3339) {
        return i64::try_from(time.unix_timestamp_nanos() / 1_000_000).ok();
    }
    if value.is_empty() {
        return None;
    }
    let mut total_ms: i64 = 0;
    let mut digits = String::new();
    for c in value.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit_ms: i64 = match c {
            'h' => 3_600_000,
            'm' => 60_000,
            's' => 1_000,
            _ => return None,
        };
        let n: i64 = digits.parse().ok()?;
        total_ms = total_ms.checked_add(n.checked_mul(unit_ms)?)?;
        digits.clear();
    }
    if !digits.is_empty() {
        return None;
    }
    Some(now_ms.saturating_sub(total_ms))
}

/// The options of a logs request: ACI's `tail` and `timestamps`, Berth's `follow`, `previous`, `since`.
fn log_request(
    group: &GroupRecord,
    container: &str,
    query: &HashMap<String, String>,
) -> Result<LogsRequest, ApiError> {
    let tail = match query.get("tail") {
        None => None,
        Some(value) => Some(value.trim().parse::<u32>().map_err(|_| {
            ApiError::bad_request(
                "InvalidParameter",
                "tail",
                format!("The value '{value}' of parameter 'tail' is not a non-negative integer."),
            )
        })?),
    };
    let timestamps = bool_param(query, "timestamps")?;
    let follow = bool_param(query, "follow")?;
    let previous = bool_param(query, "previous")?;
    if follow && previous {
        return Err(ApiError::bad_request(
            "InvalidParameter",
            "follow",
            "The previous run of a container does not grow: 'follow' cannot be combined with \
             'previous'.",
        ));
    }
    let since_unix_ms = match query.get("since") {
        None => None,
        Some(value) => Some(parse_since(value, now_ms()).ok_or_else(|| {
            ApiError::bad_request(
                "InvalidParameter",
                "since",
                format!(
                    "The value '{value}' of parameter 'since' is neither an RFC 3339 time \
                     (2026-01-02T15:04:05Z) nor a duration such as 30s, 5m or 1h30m."
                ),
            )
        })?),
    };
    Ok(LogsRequest {
        group_id: group.id.clone(),
        container: container.to_owned(),
        tail,
        timestamps,
        follow,
        previous,
        since_unix_ms,
    })
}

/// `GET …/containers/{c}/logs`: the container's current (or previous) run, read from its node's
/// agent. With `follow=true` the answer is streamed text, lines appearing as they are written.
pub(super) async fn logs(
    State(state): State<AppState>,
    principal: Principal,
    Path(path): ContainerPath,
    Query(query): Q,
) -> Result<Response, ApiError> {
    let group = load_container(&state, &principal, &path, &query).await?;
    let container = &path.3;
    let request = log_request(&group, container, &query)?;
    let (node_id, endpoint) = placement(&state, &group, "container logs").await?;
    if request.follow {
        let stream = state
            .agents
            .logs_stream(&node_id, &endpoint, request)
            .await
            .map_err(|e| agent_error(&group, container, "container logs", e))?;
        let body = Body::from_stream(stream.map(|chunk| {
            chunk
                .map(|c| Bytes::from(c.data))
                .map_err(|status| std::io::Error::other(status.message().to_owned()))
        }));
        let mut response = Response::new(body);
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        return Ok(response);
    }
    let content = state
        .agents
        .logs(&node_id, &endpoint, request)
        .await
        .map_err(|e| agent_error(&group, container, "container logs", e))?;
    Ok(Json(arm::Logs {
        content: String::from_utf8_lossy(&content).into_owned(),
    })
    .into_response())
}

/// The argv, TTY and stdin of an exec request, validated.
fn exec_kind(request: arm::ContainerExecRequest) -> Result<SessionKind, ApiError> {
    let command = match request.command {
        None => Vec::new(),
        Some(arm::ExecCommand::Line(line)) => line.split_whitespace().map(str::to_owned).collect(),
        Some(arm::ExecCommand::Argv(argv)) => argv,
    };
    if command.is_empty() || command[0].is_empty() {
        return Err(ApiError::bad_request(
            "InvalidParameter",
            "command",
            "The exec request needs a command: a string such as \"/bin/sh\", or an array of \
             arguments such as [\"sh\", \"-c\", \"ls\"].",
        ));
    }
    if command.iter().any(|arg| arg.contains('\0')) {
        return Err(ApiError::bad_request(
            "InvalidParameter",
            "command",
            "The command's arguments cannot contain NUL characters.",
        ));
    }
    if command.iter().map(|arg| arg.len() + 1).sum::<usize>() > MAX_COMMAND_BYTES {
        return Err(ApiError::bad_request(
            "InvalidParameter",
            "command",
            format!("The command is longer than {MAX_COMMAND_BYTES} bytes."),
        ));
    }
    let size = request.terminal_size.unwrap_or_default();
    // A terminal of size 0 is one that does not know its size (`script`, CI): `az container exec`
    // sends what the OS says. It gets the default size, as when no size is given.
    let dimension = |value: Option<i64>, default: u32, field: &str| match value {
        None | Some(0) => Ok(default),
        Some(n) if (1..=MAX_TERMINAL).contains(&n) => Ok(n as u32),
        Some(n) => Err(ApiError::bad_request(
            "InvalidParameter",
            format!("terminalSize.{field}"),
            format!("terminalSize.{field} is {n}; it must be between 1 and {MAX_TERMINAL}."),
        )),
    };
    Ok(SessionKind::Exec {
        command,
        tty: request.tty.unwrap_or(true),
        stdin: request.stdin.unwrap_or(true),
        rows: dimension(size.rows, 24, "rows")?,
        cols: dimension(size.cols, 80, "cols")?,
    })
}

/// `wss://` (or `ws://`) on the URL clients reach this server at.
fn socket_base(state: &AppState, headers: &HeaderMap) -> String {
    let base = base_url(state, headers);
    if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base
    }
}

async fn issue(
    state: &AppState,
    principal: &Principal,
    group: &GroupRecord,
    container: &str,
    kind: SessionKind,
) -> Result<(String, String), ApiError> {
    let session = Session {
        kind,
        token_id: principal.token_id.clone(),
        group: GroupKey::new(&group.subscription, &group.resource_group, &group.name),
        group_id: group.id.clone(),
        container: container.to_owned(),
    };
    Ok(state.sessions.issue(session).await?)
}

/// `POST …/containers/{c}/exec`: a session to run `command` in the container.
pub(super) async fn exec(
    State(state): State<AppState>,
    principal: Principal,
    Path(path): ContainerPath,
    Query(query): Q,
    headers: HeaderMap,
    ArmJson(request): ArmJson<arm::ContainerExecRequest>,
) -> Result<Response, ApiError> {
    let group = load_container(&state, &principal, &path, &query).await?;
    let kind = exec_kind(request)?;
    placement(&state, &group, "exec").await?;
    let (rows, cols) = match &kind {
        SessionKind::Exec { rows, cols, .. } => (*rows, *cols),
        SessionKind::Attach => (24, 80),
    };
    let (id, password) = issue(&state, &principal, &group, &path.3, kind).await?;
    let uri = format!(
        "{}/exec/{id}?rows={rows}&cols={cols}",
        socket_base(&state, &headers)
    );
    Ok(Json(arm::ContainerExecResponse {
        web_socket_uri: uri,
        password,
    })
    .into_response())
}

/// `POST …/containers/{c}/attach`: a session to watch the container's output. ACI's attach has no
/// body; one that is there must be a JSON object (it is otherwise ignored).
pub(super) async fn attach(
    State(state): State<AppState>,
    principal: Principal,
    Path(path): ContainerPath,
    Query(query): Q,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let group = load_container(&state, &principal, &path, &query).await?;
    if !body.iter().all(u8::is_ascii_whitespace) {
        parse::<serde_json::Map<String, serde_json::Value>>(&body)?;
    }
    placement(&state, &group, "attach").await?;
    let (id, password) = issue(&state, &principal, &group, &path.3, SessionKind::Attach).await?;
    let uri = format!("{}/attach/{id}", socket_base(&state, &headers));
    Ok(Json(arm::ContainerExecResponse {
        web_socket_uri: uri,
        password,
    })
    .into_response())
}

fn refused() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "AuthenticationFailed",
        "The exec or attach password is invalid, expired or already used; ask for a new one.",
    )
}

fn not_a_websocket(rejection: WebSocketUpgradeRejection) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "WebSocketRequired",
        format!("This URL takes a websocket connection: {rejection}."),
    )
}

/// A password from the `Authorization` header: the bare value (ACI's attach) or `Bearer <value>`.
fn header_password(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let password = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .unwrap_or(value);
    Some(password.to_owned())
}

/// A password carried as Kubernetes' `base64url.bearer.authorization.k8s.io.<token>` subprotocol.
fn protocol_password(ws: &WebSocketUpgrade) -> Option<String> {
    ws.requested_protocols().find_map(|p| {
        let encoded = p.to_str().ok()?.strip_prefix(BEARER_PROTOCOL)?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(encoded.trim_end_matches('='))
            .ok()?;
        String::from_utf8(bytes).ok()
    })
}

/// How frames are laid out on one socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// ACI: raw bytes both ways, close on exit.
    Aci,
    /// Kubernetes' channel byte first ([`berth_proto::exec`]).
    Channel(Version),
}

/// `GET /exec/{id}` (websocket).
pub(super) async fn exec_socket(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return not_a_websocket(rejection).into_response(),
    };
    let version = ws
        .requested_protocols()
        .find_map(|p| Version::from_protocol(p.to_str().ok()?));
    let Some(version) = version else {
        // ACI's protocol: the password comes as the first frame.
        match state.sessions.is_pending(&id).await {
            Ok(true) => {}
            Ok(false) => return refused().into_response(),
            Err(err) => return ApiError::from(err).into_response(),
        }
        return ws.on_upgrade(move |socket| async move {
            let mut socket = socket;
            let Some(session) = first_frame_password(&state, &id, false, &mut socket).await else {
                return;
            };
            run_exec(state, session, socket, Framing::Aci).await;
        });
    };
    let Some(password) = header_password(&headers).or_else(|| protocol_password(&ws)) else {
        return refused().into_response();
    };
    let session = match state.sessions.open(&id, &password).await {
        Ok(session) if matches!(session.kind, SessionKind::Exec { .. }) => session,
        Err(OpenError::Store(err)) => return ApiError::from(err).into_response(),
        _ => return refused().into_response(),
    };
    ws.protocols([version.protocol()])
        .on_upgrade(move |socket| run_exec(state, session, socket, Framing::Channel(version)))
}

/// `GET /attach/{id}` (websocket): the password in the `Authorization` header, or as the first frame.
pub(super) async fn attach_socket(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return not_a_websocket(rejection).into_response(),
    };
    let Some(password) = header_password(&headers) else {
        return match state.sessions.is_pending(&id).await {
            Ok(true) => ws.on_upgrade(move |socket| async move {
                let mut socket = socket;
                if let Some(session) = first_frame_password(&state, &id, true, &mut socket).await {
                    run_attach(state, session, socket).await;
                }
            }),
            Ok(false) => refused().into_response(),
            Err(err) => ApiError::from(err).into_response(),
        };
    };
    match state.sessions.open(&id, &password).await {
        Ok(session) if session.kind == SessionKind::Attach => {
            ws.on_upgrade(move |socket| run_attach(state, session, socket))
        }
        Err(OpenError::Store(err)) => ApiError::from(err).into_response(),
        _ => refused().into_response(),
    }
}

/// Reads the password from the first frame and opens the session; on failure closes the socket
/// with 1008 (policy violation) and returns `None`.
async fn first_frame_password(
    state: &AppState,
    id: &str,
    attach: bool,
    socket: &mut WebSocket,
) -> Option<Session> {
    let frame = tokio::time::timeout(PASSWORD_WAIT, async {
        loop {
            match socket.recv().await {
                Some(Ok(Message::Text(text))) => return Some(text.as_str().to_owned()),
                Some(Ok(Message::Binary(bytes))) => {
                    return Some(String::from_utf8_lossy(&bytes).into_owned());
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                _ => return None,
            }
        }
    })
    .await
    .ok()
    .flatten();
    let opened = match frame {
        Some(password) => {
            state
                .sessions
                .open(id, password.trim_end_matches(['\r', '\n']))
                .await
        }
        None => Err(Refused.into()),
    };
    // An exec session opens only /exec, an attach session only /attach.
    match opened {
        Ok(session) if (session.kind == SessionKind::Attach) == attach => Some(session),
        Err(OpenError::Store(err)) => {
            tracing::error!(error = %err, "cannot open an exec session");
            close(socket, 1011, "the apiserver's store is unavailable; retry").await;
            None
        }
        _ => {
            close(socket, 1008, &Refused.to_string()).await;
            None
        }
    }
}

async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    // A close reason is at most 123 bytes.
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason[..end].into(),
        })))
        .await;
}

/// Where a session's container runs now: `(group, node, endpoint)`, or why it cannot be reached.
async fn session_target(
    state: &AppState,
    session: &Session,
) -> Result<(GroupRecord, String, String), ApiError> {
    let group = state
        .store
        .group(&session.group)
        .await?
        .filter(|g| g.id == session.group_id)
        .ok_or_else(|| {
            ApiError::group_not_found(&session.group.resource_group, &session.group.name)
        })?;
    let what = match session.kind {
        SessionKind::Exec { .. } => "exec",
        SessionKind::Attach => "attach",
    };
    let (node_id, endpoint) = placement(state, &group, what).await?;
    Ok((group, node_id, endpoint))
}

/// Tells the client why the exec could not run, then closes.
async fn fail(socket: &mut WebSocket, framing: Framing, message: &str) {
    match framing {
        Framing::Aci => {
            let _ = socket
                .send(Message::Binary(Bytes::from(format!("{message}\r\n"))))
                .await;
            close(socket, 1011, message).await;
        }
        Framing::Channel(_) => {
            let _ = socket.send(status_frame(&Status::failed(message))).await;
            close(socket, 1000, "").await;
        }
    }
}

fn channel_frame(channel: u8, data: &[u8]) -> Message {
    Message::Binary(Bytes::from(exec::frame(channel, data)))
}

/// The last frame of a channel session: how the command ended.
fn status_frame(status: &Status) -> Message {
    // Strings and a unit struct: serializing cannot fail.
    let json = serde_json::to_vec(status).unwrap_or_default();
    channel_frame(channel::STATUS, &json)
}

/// What one client frame asks for, under `framing`.
fn decode_input(framing: Framing, message: Message) -> Option<exec_input::Input> {
    match (framing, message) {
        (Framing::Aci, Message::Binary(bytes)) => Some(exec_input::Input::Stdin(bytes.to_vec())),
        (Framing::Aci, Message::Text(text)) => {
            Some(exec_input::Input::Stdin(text.as_str().as_bytes().to_vec()))
        }
        (Framing::Channel(version), Message::Binary(bytes)) => {
            match ClientFrame::parse(version, &bytes) {
                ClientFrame::Stdin(data) => Some(exec_input::Input::Stdin(data.to_vec())),
                ClientFrame::Resize(size) => Some(exec_input::Input::Resize(TerminalSize {
                    rows: size.height,
                    cols: size.width,
                })),
                ClientFrame::CloseStdin => Some(exec_input::Input::CloseStdin(true)),
                ClientFrame::Other => None,
            }
        }
        _ => None,
    }
}

/// One exec session from a websocket to the agent and back, until the process exits or either side
/// goes away. Dropping the agent call on the way out cancels it: the agent kills the process.
async fn run_exec(state: AppState, session: Session, mut socket: WebSocket, framing: Framing) {
    let SessionKind::Exec {
        command,
        tty,
        stdin,
        rows,
        cols,
    } = session.kind.clone()
    else {
        return;
    };
    let begun = std::time::Instant::now();
    let (group, node_id, endpoint) = match session_target(&state, &session).await {
        Ok(target) => target,
        Err(error) => return fail(&mut socket, framing, &error.message).await,
    };
    let looked_up = begun.elapsed();
    let start = ExecStart {
        group_id: group.id.clone(),
        container: session.container.clone(),
        command,
        tty,
        stdin,
        size: Some(TerminalSize { rows, cols }),
    };
    let call = match state.agents.exec(&node_id, &endpoint, start).await {
        Ok(call) => call,
        Err(error) => {
            let error = agent_error(&group, &session.container, "exec", error);
            return fail(&mut socket, framing, &error.message).await;
        }
    };
    tracing::debug!(
        group = %group.id,
        container = %session.container,
        token = %session.token_id,
        pid = call.pid,
        lookup_ms = looked_up.as_secs_f64() * 1e3,
        started_ms = begun.elapsed().as_secs_f64() * 1e3,
        "exec started"
    );
    pump_exec(socket, call, framing).await;
}

async fn pump_exec(socket: WebSocket, call: ExecCall, framing: Framing) {
    let ExecCall {
        input, mut output, ..
    } = call;
    let (mut to_client, mut from_client) = socket.split();
    loop {
        tokio::select! {
            message = from_client.next() => match message {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(message)) => {
                    if let Some(request) = decode_input(framing, message) {
                        let input_message = ExecInput { input: Some(request) };
                        if input.send(input_message).await.is_err() {
                            return;
                        }
                    }
                }
            },
            out = output.message() => {
                let frame = match out {
                    Ok(Some(ExecOutput { output: Some(out) })) => out,
                    Ok(Some(ExecOutput { output: None })) => continue,
                    Ok(None) | Err(_) => {
                        let message = match out {
                            Err(status) => format!("the node ended the exec: {}", status.message()),
                            _ => "the node ended the exec without an exit code".to_owned(),
                        };
                        let mut socket = match to_client.reunite(from_client) {
                            Ok(socket) => socket,
                            Err(_) => return,
                        };
                        return fail(&mut socket, framing, &message).await;
                    }
                };
                let sent = match (framing, frame) {
                    (Framing::Aci, exec_output::Output::Stdout(data) | exec_output::Output::Stderr(data)) => {
                        to_client.send(Message::Binary(Bytes::from(data))).await
                    }
                    (Framing::Channel(_), exec_output::Output::Stdout(data)) => {
                        to_client.send(channel_frame(channel::STDOUT, &data)).await
                    }
                    (Framing::Channel(_), exec_output::Output::Stderr(data)) => {
                        to_client.send(channel_frame(channel::STDERR, &data)).await
                    }
                    (_, exec_output::Output::StartedPid(_)) => Ok(()),
                    (Framing::Aci, exec_output::Output::ExitCode(code)) => {
                        let _ = to_client.send(Message::Close(Some(CloseFrame {
                            code: 1000,
                            reason: format!("exit code {code}").into(),
                        }))).await;
                        return;
                    }
                    (Framing::Channel(_), exec_output::Output::ExitCode(code)) => {
                        let _ = to_client.send(status_frame(&Status::exited(code))).await;
                        let _ = to_client.send(Message::Close(Some(CloseFrame {
                            code: 1000,
                            reason: "".into(),
                        }))).await;
                        return;
                    }
                };
                if sent.is_err() {
                    return;
                }
            }
        }
    }
}

/// One attach session: the container's output from now on, until it stops for good or the client
/// goes away.
async fn run_attach(state: AppState, session: Session, mut socket: WebSocket) {
    let (group, node_id, endpoint) = match session_target(&state, &session).await {
        Ok(target) => target,
        Err(error) => return fail(&mut socket, Framing::Aci, &error.message).await,
    };
    let request = LogsRequest {
        group_id: group.id.clone(),
        container: session.container.clone(),
        tail: Some(0),
        timestamps: false,
        follow: true,
        previous: false,
        since_unix_ms: None,
    };
    let mut stream = match state.agents.logs_stream(&node_id, &endpoint, request).await {
        Ok(stream) => stream,
        Err(error) => {
            let error = agent_error(&group, &session.container, "attach", error);
            return fail(&mut socket, Framing::Aci, &error.message).await;
        }
    };
    loop {
        tokio::select! {
            message = socket.recv() => match message {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
            chunk = stream.message() => match chunk {
                Ok(Some(chunk)) => {
                    if socket.send(Message::Binary(Bytes::from(chunk.data))).await.is_err() {
                        return;
                    }
                }
                Ok(None) => return close(&mut socket, 1000, "the container stopped").await,
                Err(status) => {
                    let message = format!("the node ended the stream: {}", status.message());
                    return close(&mut socket, 1011, &message).await;
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_times_and_durations() {
        let now = 10_000_000;
        assert_eq!(parse_since("30s", now), Some(now - 30_000));
        assert_eq!(parse_since("1h30m", now), Some(now - 5_400_000));
        assert_eq!(
            parse_since("2026-01-02T03:04:05Z", now),
            Some(1_767_323_045_000)
        );
        assert_eq!(parse_since("", now), None);
        assert_eq!(parse_since("5", now), None);
        assert_eq!(parse_since("5d", now), None);
        assert_eq!(parse_since("yesterday", now), None);
    }

    #[test]
    fn channel_frames_decode() {
        let v5 = Framing::Channel(Version::V5);
        let v4 = Framing::Channel(Version::V4);
        let frame = |bytes: &[u8]| Message::Binary(Bytes::copy_from_slice(bytes));
        assert_eq!(
            decode_input(v5, frame(b"\x00hi")),
            Some(exec_input::Input::Stdin(b"hi".to_vec()))
        );
        assert_eq!(
            decode_input(v5, frame(b"\x04{\"Width\":100,\"Height\":40}")),
            Some(exec_input::Input::Resize(TerminalSize {
                rows: 40,
                cols: 100
            }))
        );
        assert_eq!(
            decode_input(v5, frame(&[255, 0])),
            Some(exec_input::Input::CloseStdin(true))
        );
        assert_eq!(decode_input(v4, frame(&[255, 0])), None);
        assert_eq!(decode_input(v5, frame(b"")), None);
        assert_eq!(
            decode_input(Framing::Aci, Message::Text("ls\n".into())),
            Some(exec_input::Input::Stdin(b"ls\n".to_vec()))
        );
    }

    #[test]
    fn exec_commands_are_split_or_taken_whole() {
        let request = |command: serde_json::Value| {
            serde_json::from_value::<arm::ContainerExecRequest>(
                serde_json::json!({"command": command, "terminalSize": {"rows": 30, "cols": 100}}),
            )
            .unwrap()
        };
        let SessionKind::Exec {
            command,
            tty,
            rows,
            cols,
            ..
        } = exec_kind(request(serde_json::json!("/bin/sh -c  ls"))).unwrap()
        else {
            panic!("not an exec");
        };
        assert_eq!(command, ["/bin/sh", "-c", "ls"]);
        assert!(tty);
        assert_eq!((rows, cols), (30, 100));
        let SessionKind::Exec { command, .. } =
            exec_kind(request(serde_json::json!(["sh", "-c", "echo a  b"]))).unwrap()
        else {
            panic!("not an exec");
        };
        assert_eq!(command, ["sh", "-c", "echo a  b"]);
        let error = exec_kind(request(serde_json::json!("  "))).unwrap_err();
        assert_eq!(error.target.as_deref(), Some("command"));
        let mut unknown = request(serde_json::json!("sh"));
        unknown.terminal_size = Some(arm::TerminalSize {
            rows: Some(0),
            cols: Some(0),
        });
        let SessionKind::Exec { rows, cols, .. } = exec_kind(unknown).unwrap() else {
            panic!("not an exec");
        };
        assert_eq!(
            (rows, cols),
            (24, 80),
            "a terminal that does not know its size"
        );
        for (rows, cols, target) in [
            (Some(-1), None, "terminalSize.rows"),
            (None, Some(MAX_TERMINAL + 1), "terminalSize.cols"),
        ] {
            let mut bad = request(serde_json::json!("sh"));
            bad.terminal_size = Some(arm::TerminalSize { rows, cols });
            assert_eq!(exec_kind(bad).unwrap_err().target.as_deref(), Some(target));
        }
    }
}
