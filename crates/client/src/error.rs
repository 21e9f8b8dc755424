//! The client's errors: transport failures, PDU framing errors, login refusals, protocol
//! violations by the target, and SCSI failures, each carrying what the wire said.

use std::io;

use rtgt_pdu::PduError;
use rtgt_session::initiator::{LoginError, ProtocolError, SubmitError};

use crate::scsi::ScsiFailure;
use crate::url::UrlError;

/// Anything that can go wrong talking to a target.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Socket error (connect, read, write, timeout).
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// The target closed the connection.
    #[error("connection closed by the target")]
    Closed,
    /// A PDU from the target could not be framed or decoded (digest error, bad length…).
    #[error("bad PDU from the target: {0}")]
    Pdu(#[from] PduError),
    /// The login failed.
    #[error("login failed: {0}")]
    Login(#[from] LoginError),
    /// The target broke the protocol in full feature phase.
    #[error("protocol violation by the target: {0}")]
    Protocol(#[from] ProtocolError),
    /// A request could not be sent.
    #[error("cannot send: {0}")]
    Submit(#[from] SubmitError),
    /// A SCSI command failed (status, sense, rejection).
    #[error("{0}")]
    Scsi(#[from] ScsiFailure),
    /// A malformed URL or portal.
    #[error("bad URL: {0}")]
    Url(#[from] UrlError),
    /// No answer within the configured time.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// The target's answer does not make sense for the request.
    #[error("unexpected answer from the target: {0}")]
    Unexpected(String),
    /// A configuration value is not usable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A verify run found data that does not match what was written.
    #[error("data verification failed: {0}")]
    Verify(String),
}

impl ClientError {
    /// Whether the connection is gone (the caller may reconnect).
    pub fn is_connection_loss(&self) -> bool {
        matches!(
            self,
            Self::Io(_) | Self::Closed | Self::Pdu(_) | Self::Protocol(_) | Self::Timeout(_)
        )
    }
}

/// Result alias.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;
