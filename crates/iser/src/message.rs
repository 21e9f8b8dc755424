//! iSER messages (RFC 7145 §9): an iSER header followed, for control-type
//! PDUs, by the BHS, the AHS and the data segment of one iSCSI PDU. No
//! digests and no padding are carried (§6.1; Linux sends the data segment
//! unpadded, padding is accepted on receipt).

use core::ops::Range;

use rtgt_pdu::{BHS_LEN, BhsLengths, PduHeader, padded_len};

use crate::error::ProtocolError;
use crate::header::{
    Hello, HelloReply, ISER_HEADER_LEN, ISER_PDU_HEADER_LEN, IserHeader, MessageKind,
};

/// A decoded message; ranges index the message bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// An iSCSI control-type PDU.
    Control {
        /// The iSER header (STags).
        iser: IserHeader,
        /// The BHS.
        header: PduHeader,
        /// Where the AHS is.
        ahs: Range<usize>,
        /// Where the data segment is.
        data: Range<usize>,
    },
    /// iSER Hello.
    Hello(Hello),
    /// iSER HelloReply.
    HelloReply(HelloReply),
}

/// Parses a received message.
pub fn parse(msg: &[u8]) -> Result<Message, ProtocolError> {
    let first = *msg.first().ok_or(ProtocolError::ShortMessage(0))?;
    match MessageKind::of(first)? {
        MessageKind::Hello => return Hello::decode(msg).map(Message::Hello),
        MessageKind::HelloReply => return HelloReply::decode(msg).map(Message::HelloReply),
        MessageKind::Control => {}
    }
    let (ih, rest) = msg
        .split_first_chunk::<ISER_HEADER_LEN>()
        .ok_or(ProtocolError::ShortMessage(msg.len()))?;
    let (bhs, _) = rest
        .split_first_chunk::<BHS_LEN>()
        .ok_or(ProtocolError::ShortMessage(msg.len()))?;
    let iser = IserHeader::decode(ih)?;
    let header = PduHeader::decode(bhs)?;
    let lengths = BhsLengths::from_bhs(bhs);
    let ahs_len = lengths.ahs_len();
    let data_len = lengths.data_len() as usize;
    let received = msg.len() - ISER_PDU_HEADER_LEN;
    let exact = ahs_len + data_len;
    if received != exact && received != ahs_len + padded_len(data_len) {
        return Err(ProtocolError::LengthMismatch {
            declared: exact,
            received,
        });
    }
    let ahs = ISER_PDU_HEADER_LEN..ISER_PDU_HEADER_LEN + ahs_len;
    let data = ahs.end..ahs.end + data_len;
    Ok(Message::Control {
        iser,
        header,
        ahs,
        data,
    })
}

/// Writes the headers of a control-type PDU (iSER header, BHS, AHS) into
/// `out`; returns the length written, or `None` if `out` is too small.
pub fn write_headers(
    out: &mut [u8],
    iser: &IserHeader,
    header: &PduHeader,
    ahs: &[u8],
    data_len: usize,
) -> Option<usize> {
    let lengths = BhsLengths::new(ahs.len(), data_len).ok()?;
    let total = ISER_PDU_HEADER_LEN + ahs.len();
    let dst = out.get_mut(..total)?;
    let (ih, rest) = dst.split_at_mut(ISER_HEADER_LEN);
    ih.copy_from_slice(&iser.encode());
    let (bhs, ahs_dst) = rest.split_at_mut(BHS_LEN);
    bhs.copy_from_slice(&header.encode(lengths));
    ahs_dst.copy_from_slice(ahs);
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtgt_pdu::{Itt, NopOut, Ttt};

    fn nop_message(data: &[u8], pad: usize) -> Vec<u8> {
        let h = PduHeader::NopOut(NopOut {
            immediate: true,
            itt: Itt(1),
            ttt: Ttt::RESERVED,
            ..Default::default()
        });
        let mut out = vec![0u8; ISER_PDU_HEADER_LEN];
        write_headers(&mut out, &IserHeader::default(), &h, &[], data.len()).unwrap();
        out.extend_from_slice(data);
        out.extend(std::iter::repeat_n(0, pad));
        out
    }

    #[test]
    fn control_message_round_trip_with_and_without_padding() {
        for pad in [0, 3] {
            let m = nop_message(b"hello", pad);
            let Message::Control { header, data, .. } = parse(&m).unwrap() else {
                panic!("not a control message");
            };
            assert_eq!(header.itt(), Itt(1));
            assert_eq!(&m[data], b"hello");
        }
    }

    #[test]
    fn truncated_and_overlong_messages_are_refused() {
        let m = nop_message(b"hello", 0);
        assert_eq!(
            parse(&m[..m.len() - 1]),
            Err(ProtocolError::LengthMismatch {
                declared: 5,
                received: 4
            })
        );
        let mut long = m.clone();
        long.push(0);
        assert!(matches!(
            parse(&long),
            Err(ProtocolError::LengthMismatch { .. })
        ));
        assert_eq!(parse(&m[..40]), Err(ProtocolError::ShortMessage(40)));
        assert_eq!(parse(&[]), Err(ProtocolError::ShortMessage(0)));
    }

    #[test]
    fn hello_messages_parse() {
        let h = Hello {
            max_version: 10,
            min_version: 10,
            ird: 8,
        };
        assert_eq!(parse(&h.encode()), Ok(Message::Hello(h)));
    }
}
