//! The local terminal of `exec -t`: its window size, and raw mode for the length of a session.
//!
//! Raw mode is a guard, [`RawMode`], that puts the terminal back as it found it when dropped: on
//! success, on error and while a panic unwinds. On systems other than Unix there is no raw mode and
//! no size (the server's default, 24x80, applies).

/// The size of a terminal window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSize {
    pub rows: u16,
    pub cols: u16,
}

impl Default for WindowSize {
    /// ACI's and Kubernetes' size when none is known: 24x80.
    fn default() -> Self {
        Self { rows: 24, cols: 80 }
    }
}

pub use imp::{RawMode, window_size};

#[cfg(unix)]
mod imp {
    use std::io::IsTerminal as _;

    use rustix::termios::{self, OptionalActions, Termios};

    use super::WindowSize;

    /// The size of the terminal on stdout, else stdin, else stderr; `None` when none is a terminal
    /// or it reports no size.
    pub fn window_size() -> Option<WindowSize> {
        let size = |fd: rustix::fd::BorrowedFd<'_>| {
            let size = termios::tcgetwinsize(fd).ok()?;
            (size.ws_row > 0 && size.ws_col > 0).then_some(WindowSize {
                rows: size.ws_row,
                cols: size.ws_col,
            })
        };
        use std::os::fd::AsFd as _;
        size(std::io::stdout().as_fd())
            .or_else(|| size(std::io::stdin().as_fd()))
            .or_else(|| size(std::io::stderr().as_fd()))
    }

    /// Stdin's terminal in raw mode (no echo, no line editing, no signals from keys) until dropped.
    #[derive(Debug)]
    pub struct RawMode {
        original: Termios,
    }

    impl RawMode {
        /// Puts the terminal on stdin in raw mode; `None` when stdin is not a terminal.
        pub fn enable() -> std::io::Result<Option<Self>> {
            let stdin = std::io::stdin();
            if !stdin.is_terminal() {
                return Ok(None);
            }
            let original = termios::tcgetattr(&stdin)?;
            let mut raw = original.clone();
            raw.make_raw();
            termios::tcsetattr(&stdin, OptionalActions::Now, &raw)?;
            Ok(Some(Self { original }))
        }
    }

    impl Drop for RawMode {
        fn drop(&mut self) {
            // Nothing more can be done if this fails; the terminal is likely gone.
            let _ = termios::tcsetattr(std::io::stdin(), OptionalActions::Now, &self.original);
        }
    }
}

#[cfg(not(unix))]
mod imp {
    use super::WindowSize;

    /// No terminal size is known here.
    pub fn window_size() -> Option<WindowSize> {
        None
    }

    /// No raw mode here: the terminal stays as it is.
    #[derive(Debug)]
    pub struct RawMode;

    impl RawMode {
        /// Always `None`: raw mode is not supported on this system.
        pub fn enable() -> std::io::Result<Option<Self>> {
            Ok(None)
        }
    }
}

/// Tells when the window of the local terminal changes size (SIGWINCH).
#[derive(Debug)]
pub struct WindowChanges {
    #[cfg(unix)]
    signal: tokio::signal::unix::Signal,
}

impl WindowChanges {
    /// Starts listening; must be called within the async runtime.
    pub fn listen() -> std::io::Result<Self> {
        Ok(Self {
            #[cfg(unix)]
            signal: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())?,
        })
    }

    /// Waits for the next change; `None` when no more can come.
    pub async fn changed(&mut self) -> Option<()> {
        #[cfg(unix)]
        return self.signal.recv().await;
        #[cfg(not(unix))]
        std::future::pending().await
    }
}

/// Tells when something outside asks this process to end (SIGTERM, SIGHUP), so that a session can
/// put the terminal back before exiting.
#[derive(Debug)]
pub struct EndRequests {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hangup: tokio::signal::unix::Signal,
}

impl EndRequests {
    /// Starts listening; must be called within the async runtime.
    pub fn listen() -> std::io::Result<Self> {
        #[cfg(unix)]
        return Ok(Self {
            terminate: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?,
            hangup: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?,
        });
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// Waits for a request to end; returns the exit code a shell gives a process ended by it
    /// (128 + the signal's number).
    pub async fn requested(&mut self) -> u8 {
        #[cfg(unix)]
        return tokio::select! {
            _ = self.terminate.recv() => 128 + 15,
            _ = self.hangup.recv() => 128 + 1,
        };
        #[cfg(not(unix))]
        std::future::pending().await
    }
}

/// Tells when Ctrl-C is pressed (SIGINT), counting from [`Interrupts::listen`]: the default action
/// (ending the process) no longer applies from then on.
#[derive(Debug)]
pub struct Interrupts {
    #[cfg(unix)]
    signal: tokio::signal::unix::Signal,
}

impl Interrupts {
    /// Starts listening; must be called within the async runtime.
    pub fn listen() -> std::io::Result<Self> {
        Ok(Self {
            #[cfg(unix)]
            signal: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?,
        })
    }

    /// Waits for the next Ctrl-C.
    pub async fn interrupted(&mut self) {
        #[cfg(unix)]
        self.signal.recv().await;
        #[cfg(not(unix))]
        std::future::pending::<()>().await
    }
}
