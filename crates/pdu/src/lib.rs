//! iSCSI PDU codec (RFC 7143): typed headers, digests, text keys, login key
//! negotiation, serial numbers and a sans-IO stream framer.
//!
//! This crate does no I/O, spawns no threads and reads no clock; it turns
//! bytes into typed values and back, and decides nothing that needs state
//! beyond one connection's framing and negotiation.
//!
//! | Module | Implements |
//! |---|---|
//! | [`codes`] | wire code points as newtypes (RFC 7143 §11) |
//! | [`header`] | the typed BHS of every PDU (§11.2–§11.19) |
//! | [`ahs`] | additional header segments (§11.2.2) |
//! | [`digest`] | CRC32C header/data digests (§7.8, RFC 3720 B.4) |
//! | [`framer`] | stream framing with limits and digests (§11.2, §7.8) |
//! | [`text`] | `key=value` text data, continuation, value encodings (§6.1) |
//! | [`negotiation`] | the key table and negotiation engine (§6.2, §13, RFC 7145 §6) |
//! | [`serial`] | RFC 1982 serial numbers (§4.2.2.1) |
//!
//! # Example: frame a stream, answer a digest error
//!
//! ```
//! use rtgt_pdu::{Digests, ErrorAction, Event, Framer, Itt, NopOut, Pdu, RejectReason, Sn, Ttt};
//!
//! let pdu = Pdu::with_data(NopOut { itt: Itt(1), ttt: Ttt::RESERVED, ..Default::default() }, vec![1, 2, 3]);
//! let mut wire = pdu.to_bytes(Digests::BOTH)?;
//! let last = wire.len() - 1;
//! wire[last] ^= 0xff; // corrupt the data digest
//!
//! let mut framer = Framer::new();
//! framer.enter_full_feature(Digests::BOTH, 8192);
//! let mut input = &wire[..];
//! assert!(matches!(framer.next_event(&mut input)?, Some(Event::Header(_))));
//! assert_eq!(framer.next_event(&mut input)?, Some(Event::Data(&[1, 2, 3][..])));
//! let err = framer.next_event(&mut input).unwrap_err();
//! assert_eq!(err.action(), ErrorAction::Reject(RejectReason::DATA_DIGEST_ERROR));
//! assert_eq!(framer.last_header_bytes(), &wire[..48]); // goes into the Reject PDU
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]

pub mod ahs;
pub mod bhs;
pub mod codes;
pub mod digest;
pub mod error;
pub mod fields;
pub mod framer;
pub mod header;
pub mod negotiation;
pub mod pdu;
pub mod serial;
pub mod text;
mod wire;

pub use ahs::{Ahs, AhsIter, AhsRef, iter_ahs};
pub use bhs::{
    BHS_LEN, BhsLengths, DIGEST_LEN, LOGIN_SEGMENT_LIMIT, MAX_AHS_LEN, MAX_DATA_SEGMENT_LEN,
    MAX_HEADER_LEN, pad_len, padded_len, padding,
};
pub use codes::{
    AhsType, AsyncEvent, LoginStage, LoginStatus, LoginStatusClass, LogoutReason,
    LogoutResponseCode, Opcode, RejectReason, ResponseCode, ScsiStatus, SnackType, TaskAttribute,
    TmfFunction, TmfResponse,
};
pub use digest::{
    DataDigest, crc32c, crc32c_append, data_digest, digest_from_wire, digest_to_wire, header_digest,
};
pub use error::{EncodeError, ErrorAction, PduError};
pub use fields::{Isid, Itt, Lun, Residual, Ttt};
pub use framer::{Event, FramedHeader, Framer};
pub use header::{
    AsyncMessage, Cdb, DataIn, DataInStatus, DataOut, LoginRequest, LoginResponse, LogoutRequest,
    LogoutResponse, MAX_CDB_LEN, NopIn, NopOut, PduHeader, R2t, Reject, ScsiCommand, ScsiResponse,
    SenseSegment, SnackRequest, TaskMgmtRequest, TaskMgmtResponse, TextRequest, TextResponse,
};
pub use pdu::{DataTrailer, Digests, EncodedHeader, Pdu};
pub use serial::{SerialNumber, Sn};
