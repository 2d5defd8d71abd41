//! `berth container attach`.

use std::time::Duration;

use anyhow::Context as _;
use berth_proto::arm::ContainerExecResponse;
use futures::StreamExt as _;
use tokio_tungstenite::tungstenite::Message;

use crate::CommandExit;
use crate::cli::ContainerArgs;
use crate::commands::Context;
use crate::commands::container::{container_path, emit};
use crate::session::{self, SessionError};
use crate::terminal::Interrupts;

/// POSTs `attach` and prints every frame of the websocket it answers with, until the server closes
/// it (the container stopped for good, the group was deleted) or Ctrl-C (exit 130, as a shell
/// reports a process Ctrl-C ended).
pub async fn attach(ctx: &Context, args: &ContainerArgs) -> anyhow::Result<()> {
    let path = container_path(ctx, args).await?;
    let answer: ContainerExecResponse = ctx
        .client
        .post::<()>(&format!("{path}/attach"), None)
        .await?
        .json()?;
    // ACI's way: the password itself is the Authorization header.
    let mut socket = ctx
        .client
        .websocket(&answer.web_socket_uri, &answer.password, None)
        .await?;
    let mut stdout = std::io::stdout();
    // After the server's close frame only the closing handshake is left: how the connection then
    // ends (a TCP close without TLS's close_notify, say) does not matter.
    let mut closed = false;
    let mut interrupts = Interrupts::listen().context("cannot listen for Ctrl-C")?;
    loop {
        let frame = tokio::select! {
            frame = socket.next() => frame,
            () = interrupts.interrupted() => {
                // Say goodbye, briefly.
                let _ = tokio::time::timeout(Duration::from_secs(1), socket.close(None)).await;
                return Err(CommandExit { code: 130, message: String::new() }.into());
            }
        };
        match frame {
            None => return Ok(()),
            Some(Ok(Message::Binary(data))) => emit(&mut stdout, &data, "stdout")?,
            Some(Ok(Message::Text(text))) => emit(&mut stdout, text.as_bytes(), "stdout")?,
            Some(Ok(Message::Close(frame))) => {
                if let Some(e) = session::close_error(frame.as_ref()) {
                    return Err(e.into());
                }
                // Reading on sends the answer to the close frame.
                closed = true;
            }
            Some(Ok(_)) => {}
            Some(Err(_)) if closed => return Ok(()),
            Some(Err(e)) => return Err(SessionError::Broken(Box::new(e)).into()),
        }
    }
}
