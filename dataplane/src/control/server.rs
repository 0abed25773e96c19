//! The Unix control socket: accepts local clients, checks who they are, reads framed
//! requests ([`tgt_proto::socket`]) and answers each with exactly one framed response.
//!
//! The socket file is created with mode 0600 and every client's credentials are checked
//! with `SO_PEERCRED`: only root and the user the data plane runs as may talk to it.
//! Frames are bounded by [`tgt_proto::socket::MAX_FRAME_BYTES`], reads and writes by
//! timeouts, and the number of clients at once by [`CLIENTS_MAX`]. A frame that cannot be
//! trusted (wrong version, too large) is answered with a `malformed` refusal and the
//! connection is closed, because the stream can no longer be resynchronised; a payload
//! that is not a valid request is answered the same way but the connection stays usable.

// Wire and text codec: conversions that could truncate or lose a sign are `try_from`, never
// `as` (STYLE.md, hot-path rules).
#![deny(clippy::cast_possible_truncation, clippy::cast_sign_loss)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tgt_proto::socket::{
    decode_frame_len, encode_frame, Refusal, Request, Response, FRAME_HEADER_BYTES,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tracing::{debug, info, warn};

use super::Controller;

/// Clients served at once; the control plane uses one or two, so more is a misbehaving peer.
pub const CLIENTS_MAX: usize = 16;

/// How long a client may stay idle between requests before it is disconnected.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long reading the rest of a frame, or writing a response, may take.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the control socket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ControlSocketError {
    /// Binding, or setting the mode of, the socket file failed.
    #[error("control socket {path}")]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Something that is not a socket already exists at the path.
    #[error("control socket {0}: a file that is not a socket is in the way")]
    NotASocket(PathBuf),
}

/// A bound control socket; [`ControlSocket::serve`] answers clients on it.
pub struct ControlSocket {
    listener: UnixListener,
    path: PathBuf,
    owner_uid: u32,
}

impl ControlSocket {
    /// Binds `path` with mode 0600, replacing a stale socket left by a previous run.
    pub fn bind(path: &Path) -> Result<Self, ControlSocketError> {
        let err = |source| ControlSocketError::Bind {
            path: path.to_path_buf(),
            source,
        };
        match std::fs::symlink_metadata(path) {
            Ok(m) if std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()) => {
                std::fs::remove_file(path).map_err(err)?;
            }
            Ok(_) => return Err(ControlSocketError::NotASocket(path.to_path_buf())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(e)),
        }
        let listener = UnixListener::bind(path).map_err(err)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
        // The socket file belongs to the user we run as: that is the uid clients must have.
        let owner_uid = std::fs::metadata(path).map_err(err)?.uid();
        info!(path = %path.display(), "control socket listening");
        Ok(Self {
            listener,
            path: path.to_path_buf(),
            owner_uid,
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Answers clients until the task is dropped; removes the socket file then.
    pub async fn serve(self, controller: Arc<Controller>) {
        let slots = Arc::new(tokio::sync::Semaphore::new(CLIENTS_MAX));
        let _cleanup = RemoveOnDrop(self.path.clone());
        loop {
            let stream = match self.listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let uid = match stream.peer_cred() {
                Ok(c) => c.uid(),
                Err(e) => {
                    warn!(error = %e, "control client credentials unreadable; closed");
                    continue;
                }
            };
            if uid != 0 && uid != self.owner_uid {
                warn!(
                    uid,
                    "control client refused: not root nor the data plane's user"
                );
                continue;
            }
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                warn!(
                    limit = CLIENTS_MAX,
                    "control client refused: too many clients"
                );
                continue;
            };
            let controller = controller.clone();
            tokio::spawn(async move {
                serve_client(stream, &controller).await;
                drop(permit);
            });
        }
    }
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What reading one request gave.
enum Incoming {
    Request(Request),
    /// A bad payload inside an intact frame: answer, then go on.
    Bad(String),
    /// A frame that breaks the stream: answer, then close.
    Fatal(String),
    Closed,
}

async fn read_request(stream: &mut UnixStream) -> Incoming {
    let mut header = [0u8; FRAME_HEADER_BYTES];
    match tokio::time::timeout(IDLE_TIMEOUT, stream.read_exact(&mut header)).await {
        Ok(Ok(_)) => {}
        Ok(Err(_)) | Err(_) => return Incoming::Closed,
    }
    let len = match decode_frame_len(&header) {
        Ok(len) => len,
        Err(e) => return Incoming::Fatal(e.to_string()),
    };
    let mut payload = vec![0u8; len];
    match tokio::time::timeout(IO_TIMEOUT, stream.read_exact(&mut payload)).await {
        Ok(Ok(_)) => {}
        Ok(Err(_)) | Err(_) => return Incoming::Closed,
    }
    match serde_json::from_slice::<Request>(&payload) {
        Ok(r) => Incoming::Request(r),
        Err(e) => Incoming::Bad(e.to_string()),
    }
}

async fn write_response(stream: &mut UnixStream, resp: &Response) -> bool {
    let frame = match serde_json::to_vec(resp)
        .map_err(|e| e.to_string())
        .and_then(|p| encode_frame(&p).map_err(|e| e.to_string()))
    {
        Ok(f) => f,
        Err(e) => {
            warn!(error = %e, "control response cannot be encoded");
            return false;
        }
    };
    matches!(
        tokio::time::timeout(IO_TIMEOUT, stream.write_all(&frame)).await,
        Ok(Ok(()))
    )
}

async fn serve_client(mut stream: UnixStream, controller: &Controller) {
    loop {
        let (resp, go_on) = match read_request(&mut stream).await {
            Incoming::Closed => return,
            Incoming::Request(req) => {
                debug!(?req, "control request");
                (controller.handle(req).await, true)
            }
            Incoming::Bad(message) => (
                Response::Refused {
                    reason: Refusal::Malformed { message },
                },
                true,
            ),
            Incoming::Fatal(message) => (
                Response::Refused {
                    reason: Refusal::Malformed { message },
                },
                false,
            ),
        };
        if !write_response(&mut stream, &resp).await || !go_on {
            return;
        }
    }
}
