//! The client side of the data plane's control socket: one connection per request, one
//! framed JSON request out and one framed response back, each step under a timeout.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tgt_proto::socket::{decode_frame_len, encode_frame, Request, Response, FRAME_HEADER_BYTES};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// How long connecting may take; the socket is local, so this only trips on a hung peer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long one exchange may take. Applying a config opens (and may create) backing files,
/// which on a slow disk takes seconds.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a request to the data plane did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be connected (the data plane is not running).
    #[error("cannot connect to {path}")]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing failed.
    #[error("control socket i/o failed")]
    Io(#[source] std::io::Error),
    /// A step took too long.
    #[error("the data plane did not answer in time")]
    Timeout,
    /// The frame could not be built or its header is bad.
    #[error(transparent)]
    Frame(#[from] tgt_proto::socket::FrameError),
    /// The response is not valid JSON of a [`Response`].
    #[error("undecodable response: {0}")]
    Decode(String),
}

/// Talks to one data plane.
#[derive(Debug, Clone)]
pub struct DataplaneClient {
    path: PathBuf,
}

impl DataplaneClient {
    /// A client of the socket at `path`.
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
        }
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends one request and returns the data plane's one response.
    pub async fn call(&self, req: &Request) -> Result<Response, ClientError> {
        let payload = serde_json::to_vec(req).map_err(|e| ClientError::Decode(e.to_string()))?;
        let frame = encode_frame(&payload)?;
        let mut s = tokio::time::timeout(CONNECT_TIMEOUT, UnixStream::connect(&self.path))
            .await
            .map_err(|_| ClientError::Timeout)?
            .map_err(|source| ClientError::Connect {
                path: self.path.clone(),
                source,
            })?;
        tokio::time::timeout(EXCHANGE_TIMEOUT, async {
            s.write_all(&frame).await.map_err(ClientError::Io)?;
            let mut header = [0u8; FRAME_HEADER_BYTES];
            s.read_exact(&mut header).await.map_err(ClientError::Io)?;
            let len = decode_frame_len(&header)?;
            let mut body = vec![0u8; len];
            s.read_exact(&mut body).await.map_err(ClientError::Io)?;
            serde_json::from_slice(&body).map_err(|e| ClientError::Decode(e.to_string()))
        })
        .await
        .map_err(|_| ClientError::Timeout)?
    }
}
