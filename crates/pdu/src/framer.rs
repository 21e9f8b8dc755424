//! Sans-IO stream framer: turns a TCP byte stream, split anywhere, into PDUs
//! (RFC 7143 §11.2 framing, §7.8 digest errors, §13.12 segment limits).
//!
//! Feed it whatever arrived; it consumes from the front of the slice and
//! hands back events. It never reads a socket, never blocks and never
//! allocates in [`Framer::next_event`] mode:
//!
//! * [`Event::Header`] as soon as BHS + AHS (+ header digest) are complete
//!   and verified; the raw AHS is available from [`Framer::ahs`];
//! * [`Event::Data`] runs of the data segment, borrowed straight from the
//!   caller's input (padding and digest stripped), so a target can copy them
//!   into the task's buffer; the data digest is computed over them meanwhile;
//! * [`Event::End`] once the padding and the data digest have been checked.
//!
//! [`Framer::next_pdu`] wraps the same machine and returns whole [`Pdu`]s.
//!
//! Errors carry their answer ([`PduError::action`]): after a Reject-class
//! error the framer silently skips the rest of the offending PDU and carries
//! on; after a DropConnection error it is poisoned and repeats the error.
//!
//! Limits are checked from the verified header before anything is buffered
//! or allocated: while the login phase lasts, AHS + data may not exceed
//! 8 KiB ([`LOGIN_SEGMENT_LIMIT`]); afterwards the data segment may not
//! exceed the MaxRecvDataSegmentLength this side declared.

use crate::ahs::Ahs;
use crate::bhs::{BHS_LEN, BhsLengths, DIGEST_LEN, LOGIN_SEGMENT_LIMIT, MAX_HEADER_LEN, pad_len};
use crate::digest::{DataDigest, crc32c, digest_from_wire};
use crate::error::{ErrorAction, PduError};
use crate::header::PduHeader;
use crate::pdu::{Digests, Pdu};

/// A verified, decoded header handed out by [`Framer::next_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FramedHeader {
    /// The decoded BHS.
    pub header: PduHeader,
    /// TotalAHSLength and DataSegmentLength.
    pub lengths: BhsLengths,
}

/// One step of framing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<'i> {
    /// A new PDU's header, digest verified. Its raw AHS is [`Framer::ahs`].
    Header(FramedHeader),
    /// The next bytes of the data segment, borrowed from the input.
    Data(&'i [u8]),
    /// The PDU is complete; its data digest (if any) matched.
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Collecting BHS, AHS and header digest.
    Header,
    /// Delivering (or skipping) data bytes.
    Data,
    /// Consuming padding.
    Pad,
    /// Collecting the data digest.
    DataDigest,
    /// Header and data done; `End` is due.
    End,
}

/// The framing state machine. One per connection and direction.
///
/// ```
/// use rtgt_pdu::{Digests, Framer, Itt, NopOut, Pdu, Sn, Ttt};
///
/// let pdu = Pdu::with_data(
///     NopOut { itt: Itt(9), ttt: Ttt::RESERVED, cmd_sn: Sn(1), ..Default::default() },
///     b"hello".to_vec(),
/// );
/// let wire = pdu.to_bytes(Digests::NONE)?;
///
/// let mut framer = Framer::new();
/// let (first, second) = wire.split_at(30);
/// let mut input = first;
/// assert_eq!(framer.next_pdu(&mut input)?, None); // needs more bytes
/// let mut input = second;
/// assert_eq!(framer.next_pdu(&mut input)?, Some(pdu));
/// assert!(input.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Framer {
    digests: Digests,
    /// `None` while logging in (the 8 KiB AHS+data cap applies).
    max_data: Option<u32>,
    state: State,
    hdr: [u8; MAX_HEADER_LEN],
    hdr_have: usize,
    hdr_need: usize,
    header: Option<FramedHeader>,
    skipping: bool,
    data_left: usize,
    pad_left: usize,
    delivered: usize,
    digest: DataDigest,
    ddig: [u8; DIGEST_LEN],
    ddig_have: usize,
    poisoned: Option<PduError>,
    partial: Option<Pdu>,
}

impl Default for Framer {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for Framer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Framer")
            .field("digests", &self.digests)
            .field("max_data", &self.max_data)
            .field("state", &self.state)
            .field("header", &self.header)
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

impl Framer {
    /// A framer in login-phase mode: no digests, AHS + data ≤ 8 KiB.
    pub fn new() -> Self {
        Self {
            digests: Digests::NONE,
            max_data: None,
            state: State::Header,
            hdr: [0; MAX_HEADER_LEN],
            hdr_have: 0,
            hdr_need: BHS_LEN,
            header: None,
            skipping: false,
            data_left: 0,
            pad_left: 0,
            delivered: 0,
            digest: DataDigest::new(),
            ddig: [0; DIGEST_LEN],
            ddig_have: 0,
            poisoned: None,
            partial: None,
        }
    }

    /// Switches to full-feature mode once login completes: the negotiated
    /// digests apply from the next PDU and the data segment limit becomes the
    /// MaxRecvDataSegmentLength this side declared.
    pub fn enter_full_feature(&mut self, digests: Digests, max_recv_data_segment_length: u32) {
        self.digests = digests;
        self.max_data = Some(max_recv_data_segment_length);
    }

    /// Changes the digests (takes effect at the next PDU header).
    pub fn set_digests(&mut self, digests: Digests) {
        self.digests = digests;
    }

    /// Changes the data segment limit (e.g. after a Text renegotiation of
    /// MaxRecvDataSegmentLength); leaves login mode if still in it.
    pub fn set_max_data_segment_length(&mut self, max: u32) {
        self.max_data = Some(max);
    }

    /// The digests in force.
    pub fn digests(&self) -> Digests {
        self.digests
    }

    /// Whether the framer sits at a PDU boundary with nothing buffered.
    pub fn is_idle(&self) -> bool {
        self.state == State::Header && self.hdr_have == 0
    }

    /// The raw AHS area of the current (or last) PDU.
    pub fn ahs(&self) -> &[u8] {
        let len = self.header.as_ref().map_or(0, |h| h.lengths.ahs_len());
        self.hdr.get(BHS_LEN..BHS_LEN + len).unwrap_or(&[])
    }

    /// The complete header (BHS and AHS, no digest) of the PDU being framed or
    /// just rejected — the data segment of a Reject PDU (RFC 7143 §11.17).
    /// Valid until the next call that consumes input.
    pub fn last_header_bytes(&self) -> &[u8] {
        let len = BHS_LEN + BhsLengths::from_bhs(self.bhs()).ahs_len();
        self.hdr.get(..len).unwrap_or(&[])
    }

    fn bhs(&self) -> &[u8; BHS_LEN] {
        self.hdr.first_chunk::<BHS_LEN>().unwrap_or(&[0; BHS_LEN])
    }

    fn fail(&mut self, e: PduError) -> PduError {
        if e.action() == ErrorAction::DropConnection {
            self.poisoned = Some(e.clone());
        }
        e
    }

    /// Starts skipping the rest of the current PDU after a Reject-class error.
    fn skip_rest(&mut self, lengths: BhsLengths) {
        self.skipping = true;
        self.begin_data(lengths);
    }

    fn begin_data(&mut self, lengths: BhsLengths) {
        self.data_left = lengths.data_len() as usize;
        self.pad_left = pad_len(self.data_left);
        self.delivered = 0;
        self.digest = DataDigest::new();
        self.ddig_have = 0;
        self.hdr_have = self.hdr_need;
        self.state = State::Data;
    }

    fn reset(&mut self) {
        self.state = State::Header;
        self.hdr_have = 0;
        self.hdr_need = BHS_LEN;
        self.skipping = false;
    }

    /// Called when BHS + AHS (+ digest) are complete.
    fn finish_header(&mut self) -> Result<FramedHeader, PduError> {
        let lengths = BhsLengths::from_bhs(self.bhs());
        let ahs_end = BHS_LEN + lengths.ahs_len();
        if self.digests.header {
            let d = self
                .hdr
                .get(ahs_end..ahs_end + DIGEST_LEN)
                .and_then(|d| d.first_chunk::<DIGEST_LEN>())
                .copied()
                .unwrap_or_default();
            let received = digest_from_wire(d);
            let computed = crc32c(self.hdr.get(..ahs_end).unwrap_or(&[]));
            if received != computed {
                return Err(self.fail(PduError::HeaderDigest { received, computed }));
            }
        }
        let data_len = lengths.data_len();
        match self.max_data {
            None => {
                let total = data_len + lengths.ahs_len() as u32;
                if total > LOGIN_SEGMENT_LIMIT {
                    return Err(self.fail(PduError::LoginSegmentsTooLong {
                        len: total,
                        max: LOGIN_SEGMENT_LIMIT,
                    }));
                }
            }
            Some(max) if data_len > max => {
                return Err(self.fail(PduError::DataSegmentTooLong { len: data_len, max }));
            }
            Some(_) => {}
        }
        let header = match PduHeader::decode(self.bhs()) {
            Ok(h) => h,
            Err(e) => {
                self.skip_rest(lengths);
                return Err(self.fail(e));
            }
        };
        let ahs = self.hdr.get(BHS_LEN..ahs_end).unwrap_or(&[]);
        if let Some(Err(e)) = crate::ahs::iter_ahs(ahs).find(Result::is_err) {
            self.skip_rest(lengths);
            return Err(self.fail(e));
        }
        let framed = FramedHeader { header, lengths };
        self.header = Some(framed.clone());
        self.begin_data(lengths);
        Ok(framed)
    }

    /// Consumes bytes from the front of `input` and returns the next event,
    /// or `Ok(None)` once `input` is exhausted without completing one.
    ///
    /// On `Err`, consult [`PduError::action`]: for `Reject` answer with a
    /// Reject PDU carrying [`Framer::last_header_bytes`] and keep calling
    /// (the rest of that PDU is skipped; after a data digest error the data
    /// already handed out must be discarded); for `DropConnection` close.
    pub fn next_event<'i>(&mut self, input: &mut &'i [u8]) -> Result<Option<Event<'i>>, PduError> {
        if let Some(e) = &self.poisoned {
            return Err(e.clone());
        }
        loop {
            match self.state {
                State::Header => {
                    let want = self.hdr_need - self.hdr_have;
                    let n = want.min(input.len());
                    let (take, rest) = input.split_at(n);
                    if let Some(dst) = self.hdr.get_mut(self.hdr_have..self.hdr_have + n) {
                        dst.copy_from_slice(take);
                    }
                    *input = rest;
                    self.hdr_have += n;
                    if self.hdr_have < self.hdr_need {
                        return Ok(None);
                    }
                    if self.hdr_need == BHS_LEN {
                        let lengths = BhsLengths::from_bhs(self.bhs());
                        let mut need = BHS_LEN + lengths.ahs_len();
                        if self.digests.header {
                            need += DIGEST_LEN;
                        }
                        if need > BHS_LEN {
                            self.hdr_need = need;
                            continue;
                        }
                    }
                    return self.finish_header().map(|h| Some(Event::Header(h)));
                }
                State::Data => {
                    if self.data_left == 0 {
                        self.state = State::Pad;
                        continue;
                    }
                    if input.is_empty() {
                        return Ok(None);
                    }
                    let n = self.data_left.min(input.len());
                    let (chunk, rest) = input.split_at(n);
                    *input = rest;
                    self.data_left -= n;
                    if self.skipping {
                        continue;
                    }
                    if self.digests.data {
                        self.digest.update(chunk);
                    }
                    self.delivered += n;
                    return Ok(Some(Event::Data(chunk)));
                }
                State::Pad => {
                    if self.pad_left > 0 {
                        if input.is_empty() {
                            return Ok(None);
                        }
                        let n = self.pad_left.min(input.len());
                        let (pad, rest) = input.split_at(n);
                        *input = rest;
                        self.pad_left -= n;
                        if !self.skipping && self.digests.data {
                            // The digest covers the padding bytes as received.
                            self.digest.update(pad);
                        }
                        continue;
                    }
                    let has_data = self.header_data_len() > 0;
                    self.state = if self.digests.data && has_data {
                        State::DataDigest
                    } else {
                        State::End
                    };
                }
                State::DataDigest => {
                    let want = DIGEST_LEN - self.ddig_have;
                    let n = want.min(input.len());
                    let (take, rest) = input.split_at(n);
                    if let Some(dst) = self.ddig.get_mut(self.ddig_have..self.ddig_have + n) {
                        dst.copy_from_slice(take);
                    }
                    *input = rest;
                    self.ddig_have += n;
                    if self.ddig_have < DIGEST_LEN {
                        return Ok(None);
                    }
                    self.state = State::End;
                    if !self.skipping {
                        let received = digest_from_wire(self.ddig);
                        let computed = self.digest.finish();
                        if received != computed {
                            self.reset();
                            return Err(self.fail(PduError::DataDigest { received, computed }));
                        }
                    }
                }
                State::End => {
                    let skipped = self.skipping;
                    self.reset();
                    if !skipped {
                        return Ok(Some(Event::End));
                    }
                }
            }
        }
    }

    fn header_data_len(&self) -> u32 {
        BhsLengths::from_bhs(self.bhs()).data_len()
    }

    /// Returns the next whole PDU, or `Ok(None)` once `input` is exhausted.
    /// Allocates the data segment only after the header passed the limits.
    ///
    /// Use either this or [`next_event`](Self::next_event) for a given PDU;
    /// switching to this after `next_event` handed out some of a PDU's data
    /// fails with [`PduError::ModeSwitchMidPdu`].
    pub fn next_pdu(&mut self, input: &mut &[u8]) -> Result<Option<Pdu>, PduError> {
        loop {
            let event = match self.next_event(input) {
                Ok(Some(e)) => e,
                Ok(None) => return Ok(None),
                Err(e) => {
                    self.partial = None;
                    return Err(e);
                }
            };
            match event {
                Event::Header(h) => {
                    self.partial = Some(self.start_partial(h)?);
                }
                Event::Data(d) => {
                    if self.partial.is_none() {
                        self.partial = Some(self.resume_partial(d.len())?);
                    }
                    if let Some(p) = self.partial.as_mut() {
                        p.data.extend_from_slice(d);
                    }
                }
                Event::End => {
                    return match self.partial.take() {
                        Some(p) => Ok(Some(p)),
                        None => self.resume_partial(0).map(Some),
                    };
                }
            }
        }
    }

    fn start_partial(&self, h: FramedHeader) -> Result<Pdu, PduError> {
        let ahs = Ahs::decode_all(self.ahs())?;
        Ok(Pdu {
            header: h.header,
            ahs,
            data: Vec::with_capacity(h.lengths.data_len() as usize),
        })
    }

    /// Rebuilds the PDU from the current header when `next_pdu` takes over a
    /// PDU whose header went out through `next_event` but none of its data.
    fn resume_partial(&mut self, just_delivered: usize) -> Result<Pdu, PduError> {
        let h = self.header.clone();
        match h {
            Some(h) if self.delivered == just_delivered => self.start_partial(h),
            _ => Err(self.fail(PduError::ModeSwitchMidPdu)),
        }
    }
}
