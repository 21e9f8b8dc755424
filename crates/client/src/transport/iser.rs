//! iSCSI over iSER (RFC 7145 §7.2, the initiator) for rtgt-client's session code.
//!
//! The session code speaks a byte stream of iSCSI PDUs (a [`Transport`]); iSER moves data by
//! RDMA instead of Data-In/R2T/Data-Out PDUs. [`IserTransport`] bridges the two: the caller
//! gets one end of a local socket pair, and a bridge thread owns the other end and an
//! [`IserInitiator`] (rtgt-iser's initiator role):
//!
//! * Login, NOP, Text, TMF and Logout PDUs pass through as iSER control messages (§7.2.7).
//! * A SCSI Command gets buffers in the connection's registered data area. A read's buffer is
//!   advertised with a Read STag (§7.2.1); when the SCSI Response arrives the data the target
//!   placed there by RDMA Write is handed to the session as Data-In PDUs (as many bytes as the
//!   response's residual says were transferred), followed by the response.
//! * A write's data must be in the data area before the command goes out with its Write STag
//!   (§7.2.2: the target pulls it by RDMA Read). The bridge therefore collects it from the
//!   session first — the immediate data, any unsolicited Data-Out, and the rest by asking the
//!   session with R2Ts of its own making (local only, never sent on the wire) — then sends the
//!   command with the immediate data (at most TargetRecvDataSegmentLength) and the STag.
//! * After a response the task's STags are invalid before its buffers are reused (§7.2.4,
//!   done by `IserInitiator`); a task ended by ABORT TASK or another task management function
//!   is invalidated the same way.
//!
//! The data area bounds the transfer of one command (and of all commands in flight): size it
//! with [`IserOptions::data_area`]. A command larger than the whole area ends the connection.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::ops::Range;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rtgt_iser::soft::SoftFabric;
use rtgt_iser::verbs::Verbs;
use rtgt_iser::{CommandIo, InitiatorConfig, InitiatorEvent, IserError, IserInitiator, IserLimits};
use rtgt_pdu::negotiation::NegotiatedParams;
use rtgt_pdu::{
    Ahs, BHS_LEN, DataIn, Digests, Framer, Itt, Lun, Opcode, Pdu, PduHeader, R2t, Reject,
    RejectReason, Residual, ScsiCommand, ScsiResponse, ScsiStatus, Sn, TmfFunction, TmfResponse,
    Ttt,
};

use super::Transport;

/// Where iSER connections get their RDMA verbs.
#[derive(Debug, Clone)]
pub enum IserFabric {
    /// The in-process soft fabric (a target in the same process, e.g. `selftest-iser`).
    Soft(SoftFabric),
    /// RDMA hardware through libibverbs/librdmacm (feature `rdma`).
    Rdma,
}

/// Settings of an iSER connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IserOptions {
    /// The iSER limits declared in the login (RFC 7145 §6).
    pub limits: IserLimits,
    /// Commands in flight at once (receive buffers and memory windows).
    pub queue_depth: u32,
    /// Registered data area for command buffers, in bytes.
    pub data_area: usize,
    /// The data segment length of the PDUs the bridge hands the session (Data-In it makes
    /// from RDMA-placed data) and takes from it (Data-Out it answers its own R2Ts with).
    pub local_segment: u32,
}

impl Default for IserOptions {
    fn default() -> Self {
        Self {
            limits: IserLimits {
                target_recv_data_segment_length: 65_536,
                ..IserLimits::default()
            },
            queue_depth: 64,
            data_area: 64 << 20,
            local_segment: 262_144,
        }
    }
}

impl IserOptions {
    /// Sets `config` up for an iSER login: RDMAExtensions, no digests, the iSER keys.
    pub fn apply(&self, config: &mut rtgt_pdu::negotiation::LocalConfig) {
        self.limits.apply(config);
    }
}

/// How long the RDMA-CM connection may take to come up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to an iSER portal, as a byte stream of iSCSI PDUs (see the module docs).
pub struct IserTransport {
    sock: UnixStream,
    ctl: SyncSender<Control>,
    acks: Receiver<Result<u32, String>>,
    peer: String,
    _thread: JoinHandle<()>,
}

impl core::fmt::Debug for IserTransport {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IserTransport")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

enum Control {
    /// The login finished with these values: enter iSER full feature phase.
    FullFeature(Box<NegotiatedParams>),
}

impl IserFabric {
    /// Connects to the iSER portal at `addr` (RDMA-CM), ready for the login.
    pub fn connect(&self, addr: SocketAddr, opts: &IserOptions) -> io::Result<IserTransport> {
        match self {
            Self::Soft(fabric) => IserTransport::start(fabric.clone(), addr, *opts),
            Self::Rdma => connect_rdma(addr, opts),
        }
    }
}

#[cfg(feature = "rdma")]
fn connect_rdma(addr: SocketAddr, opts: &IserOptions) -> io::Result<IserTransport> {
    // The device of the local port that routes to `addr`: rdma_cm resolves it; opening the
    // first device is what a single-port host needs.
    let device = rtgt_iser::rdma::RdmaDevice::open(None).map_err(io::Error::other)?;
    IserTransport::start(device, addr, *opts)
}

#[cfg(not(feature = "rdma"))]
fn connect_rdma(_addr: SocketAddr, _opts: &IserOptions) -> io::Result<IserTransport> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "iSER on RDMA hardware needs rtgt-client's rdma feature (this build has none)",
    ))
}

impl IserTransport {
    /// Starts the bridge over `verbs` and connects to `addr`.
    pub fn start<V: Verbs + 'static>(
        verbs: V,
        addr: SocketAddr,
        opts: IserOptions,
    ) -> io::Result<Self> {
        let (mine, theirs) = UnixStream::pair()?;
        let (ctl_tx, ctl_rx) = mpsc::sync_channel(1);
        let (ack_tx, ack_rx) = mpsc::sync_channel(1);
        let (up_tx, up_rx) = mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("rtgt-iser-bridge".into())
            .spawn(move || {
                let conn = match open(&verbs, addr, &opts) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = up_tx.send(Err(e));
                        return;
                    }
                };
                let _ = up_tx.send(Ok(()));
                Bridge::new(conn, theirs, opts, ctl_rx, ack_tx).run();
            })?;
        match up_rx.recv() {
            Ok(Ok(())) => Ok(Self {
                sock: mine,
                ctl: ctl_tx,
                acks: ack_rx,
                peer: format!("iser://{addr}"),
                _thread: thread,
            }),
            Ok(Err(e)) => Err(io::Error::new(io::ErrorKind::ConnectionRefused, e)),
            Err(_) => Err(io::Error::other("iSER bridge thread ended")),
        }
    }
}

/// Creates the initiator connection and waits for the RDMA-CM connection.
fn open<V: Verbs>(
    verbs: &V,
    addr: SocketAddr,
    opts: &IserOptions,
) -> Result<IserInitiator<V>, String> {
    let pd = Arc::new(verbs.alloc_pd().map_err(|e| e.to_string())?);
    let config = InitiatorConfig {
        limits: opts.limits,
        queue_depth: opts.queue_depth,
        data_area: opts.data_area,
        ..InitiatorConfig::default()
    };
    let mut conn = IserInitiator::connect(verbs, addr, pd, config).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    loop {
        match conn.poll() {
            Ok(Some(InitiatorEvent::Established)) => return Ok(conn),
            Ok(Some(InitiatorEvent::Failed(e))) => return Err(format!("{addr}: {e}")),
            Ok(Some(InitiatorEvent::Disconnected)) => {
                return Err(format!("{addr}: connection closed"));
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                if Instant::now() > deadline {
                    return Err(format!("{addr}: no RDMA-CM connection"));
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            Err(e) => return Err(format!("{addr}: {e}")),
        }
    }
}

impl Read for IserTransport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.sock.read(buf)
    }
}

impl Write for IserTransport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sock.write(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.sock.write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.sock.flush()
    }
}

impl AsRawFd for IserTransport {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

impl Transport for IserTransport {
    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        self.sock.set_nonblocking(on)
    }

    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.sock.set_read_timeout(timeout)
    }

    fn shutdown(&self) -> io::Result<()> {
        self.sock.shutdown(std::net::Shutdown::Both)
    }

    fn peer(&self) -> String {
        self.peer.clone()
    }

    fn login_complete(&self, params: &NegotiatedParams) -> io::Result<Option<u32>> {
        self.ctl
            .send(Control::FullFeature(Box::new(params.clone())))
            .map_err(|_| io::Error::other("iSER bridge ended"))?;
        match self.acks.recv_timeout(CONNECT_TIMEOUT) {
            Ok(Ok(segment)) => Ok(Some(segment)),
            Ok(Err(e)) => Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            Err(_) => Err(io::Error::other("iSER bridge did not answer")),
        }
    }
}

// ------------------------------------------------------------------ the bridge

/// Longest idle sleep of the bridge loop.
const MAX_IDLE: Duration = Duration::from_millis(1);

/// A SCSI command the bridge holds or has sent.
struct Task {
    cmd: ScsiCommand,
    ahs: Vec<u8>,
    read: Option<Range<usize>>,
    write: Option<Range<usize>>,
    /// Bytes of the write data the session has handed over (from offset 0, in order).
    collected: u32,
    /// Immediate data bytes (the command PDU's data segment).
    immediate: u32,
    /// Unsolicited Data-Out may still come.
    unsolicited: bool,
    /// The local R2T outstanding: (TTT, end offset).
    r2t: Option<(Ttt, u32)>,
    next_r2t_sn: u32,
    /// Sent to the target.
    sent: bool,
}

impl Task {
    fn write_len(&self) -> u32 {
        self.write.as_ref().map_or(0, |r| r.len() as u32)
    }

    fn ready(&self) -> bool {
        !self.sent && !self.unsolicited && self.r2t.is_none() && self.collected >= self.write_len()
    }
}

struct Bridge<V: Verbs> {
    conn: IserInitiator<V>,
    sock: UnixStream,
    opts: IserOptions,
    ctl: Receiver<Control>,
    acks: SyncSender<Result<u32, String>>,
    framer: Framer,
    rx: Vec<u8>,
    rx_len: usize,
    /// Bytes for the session, and how much of the front has been written.
    out: Vec<u8>,
    out_pos: usize,
    params: Option<NegotiatedParams>,
    tasks: HashMap<Itt, Task>,
    /// ITTs in arrival order, for retries of commands the transport refused.
    ready: VecDeque<Itt>,
    /// Control PDUs the transport refused for now.
    control: VecDeque<Pdu>,
    /// Commands (and their Data-Out) waiting for data-area space, in arrival order.
    parked: VecDeque<Pdu>,
    /// Task management requests sent: ITT → (function, LUN, referenced ITT).
    tmfs: HashMap<Itt, (TmfFunction, Lun, Itt)>,
    /// Data-area ranges in use.
    used: Vec<Range<usize>>,
    next_ttt: u32,
    exp_cmd_sn: Sn,
    max_cmd_sn: Sn,
    stat_sn: Sn,
    eof: bool,
    closed: bool,
}

impl<V: Verbs> Bridge<V> {
    fn new(
        conn: IserInitiator<V>,
        sock: UnixStream,
        opts: IserOptions,
        ctl: Receiver<Control>,
        acks: SyncSender<Result<u32, String>>,
    ) -> Self {
        Self {
            conn,
            sock,
            opts,
            ctl,
            acks,
            framer: Framer::new(),
            rx: vec![0; 256 * 1024],
            rx_len: 0,
            out: Vec::new(),
            out_pos: 0,
            params: None,
            tasks: HashMap::new(),
            ready: VecDeque::new(),
            control: VecDeque::new(),
            parked: VecDeque::new(),
            tmfs: HashMap::new(),
            used: Vec::new(),
            next_ttt: 1,
            exp_cmd_sn: Sn(0),
            max_cmd_sn: Sn(0),
            stat_sn: Sn(0),
            eof: false,
            closed: false,
        }
    }

    fn run(mut self) {
        if self.sock.set_nonblocking(true).is_err() {
            return;
        }
        let mut idle = Duration::ZERO;
        loop {
            let mut busy = false;
            while let Ok(Control::FullFeature(p)) = self.ctl.try_recv() {
                busy = true;
                let r = self
                    .conn
                    .enter_full_feature(&p)
                    .map(|_| self.opts.local_segment)
                    .map_err(|e| e.to_string());
                if r.is_ok() {
                    self.framer.enter_full_feature(
                        Digests::NONE,
                        self.opts
                            .local_segment
                            .max(self.opts.limits.target_recv_data_segment_length),
                    );
                    self.params = Some(*p);
                }
                let _ = self.acks.send(r);
            }
            busy |= self.read_session();
            busy |= self.poll_transport();
            busy |= self.retry();
            busy |= self.write_session();
            if self.closed && self.out_pos >= self.out.len() {
                break;
            }
            if self.eof && !self.closed {
                // The session closed its end: disconnect.
                let _ = self.conn.disconnect();
                break;
            }
            if busy {
                idle = Duration::ZERO;
            } else {
                idle = (idle * 2).clamp(Duration::from_micros(20), MAX_IDLE);
                std::thread::sleep(idle);
            }
        }
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
    }

    /// Ends the connection: the session sees the stream end once what it was sent is out.
    fn close(&mut self, why: &dyn core::fmt::Display) {
        if !self.closed {
            tracing::debug!(reason = %why, "iSER bridge closing");
            self.closed = true;
            let _ = self.conn.disconnect();
        }
    }

    // ---------------------------------------------------------------- session → target

    fn read_session(&mut self) -> bool {
        if self.eof || self.closed {
            return false;
        }
        let mut any = false;
        while let Some(free) = self.rx.get_mut(self.rx_len..) {
            if free.is_empty() {
                break;
            }
            match self.sock.read(free) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => {
                    self.rx_len += n;
                    tracing::trace!(
                        bytes = n,
                        buffered = self.rx_len,
                        "iSER bridge: read from the session"
                    );
                    any = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.eof = true;
                    break;
                }
            }
        }
        // Frame what arrived.
        let mut consumed = 0;
        loop {
            let mut input = self.rx.get(consumed..self.rx_len).unwrap_or(&[]);
            let before = input.len();
            match self.framer.next_pdu(&mut input) {
                Ok(Some(pdu)) => {
                    consumed += before - input.len();
                    self.on_session_pdu(pdu);
                }
                Ok(None) => {
                    consumed += before - input.len();
                    break;
                }
                Err(e) => {
                    self.close(&e);
                    break;
                }
            }
        }
        self.rx.copy_within(consumed..self.rx_len, 0);
        self.rx_len -= consumed;
        any
    }

    fn on_session_pdu(&mut self, pdu: Pdu) {
        tracing::trace!(opcode = ?pdu.header.opcode(), itt = ?pdu.header.itt(), len = pdu.data.len(), "iSER bridge: from the session");
        match &pdu.header {
            PduHeader::ScsiCommand(_) if !self.parked.is_empty() => self.parked.push_back(pdu),
            PduHeader::DataOut(d)
                if !self.tasks.contains_key(&d.itt) && !self.parked.is_empty() =>
            {
                self.parked.push_back(pdu);
            }
            PduHeader::ScsiCommand(cmd) => {
                let cmd = *cmd;
                if let Err(pdu) = self.new_command(cmd, pdu) {
                    self.parked.push_back(pdu);
                }
            }
            PduHeader::DataOut(d) => {
                let d = *d;
                self.data_out(&d, &pdu.data);
            }
            PduHeader::SnackRequest(_) => {
                // SNACK needs Data-In PDUs, which iSER does not have (§7.2).
                self.send_session_reject(&pdu.header, RejectReason::SNACK_REJECT);
            }
            PduHeader::TaskMgmtRequest(t) => {
                if t.function == TmfFunction::ABORT_TASK {
                    // A command still held here was never seen by the target.
                    if let Some(task) = self.tasks.get(&t.referenced_task_tag) {
                        if !task.sent {
                            self.forget(t.referenced_task_tag);
                        }
                    }
                }
                self.tmfs
                    .insert(t.itt, (t.function, t.lun, t.referenced_task_tag));
                self.control.push_back(pdu);
            }
            _ => self.control.push_back(pdu),
        }
    }

    /// Takes a new command; gives the PDU back when the data area has no room for it now.
    fn new_command(&mut self, cmd: ScsiCommand, pdu: Pdu) -> Result<(), Pdu> {
        let mut ahs = Vec::new();
        if Ahs::encode_all(&pdu.ahs, &mut ahs).is_err() {
            self.send_session_reject(&pdu.header, RejectReason::INVALID_PDU_FIELD);
            return Ok(());
        }
        let edtl = cmd.expected_data_transfer_length as usize;
        let bidi = ScsiCommand::bidi_read_length(&ahs).ok().flatten();
        let (read_len, write_len) = match (cmd.read, cmd.write) {
            (true, true) => (bidi.unwrap_or(0) as usize, edtl),
            (true, false) => (edtl, 0),
            (false, true) => (0, edtl),
            (false, false) => (0, 0),
        };
        if read_len + write_len > self.opts.data_area {
            self.close(&format!(
                "a {} byte transfer exceeds the {} byte iSER data area",
                read_len + write_len,
                self.opts.data_area
            ));
            return Ok(());
        }
        // Full for now: space comes back as responses arrive.
        let Some(read) = self.alloc(read_len) else {
            return Err(pdu);
        };
        let Some(write) = self.alloc(write_len) else {
            self.used.retain(|u| *u != read);
            return Err(pdu);
        };
        let immediate = u32::try_from(pdu.data.len()).unwrap_or(u32::MAX);
        let mut task = Task {
            cmd,
            ahs,
            read: (read_len > 0).then_some(read),
            write: (write_len > 0).then_some(write),
            collected: 0,
            immediate,
            unsolicited: cmd.write && !cmd.final_pdu,
            r2t: None,
            next_r2t_sn: 0,
            sent: false,
        };
        if let Some(w) = task.write.clone() {
            let n = pdu.data.len().min(w.len());
            if let (Ok(dst), Some(src)) =
                (self.conn.data_mut(w.start..w.start + n), pdu.data.get(..n))
            {
                dst.copy_from_slice(src);
                task.collected = n as u32;
            }
        }
        let itt = cmd.itt;
        self.tasks.insert(itt, task);
        self.advance(itt);
        Ok(())
    }

    fn data_out(&mut self, d: &rtgt_pdu::DataOut, data: &[u8]) {
        let Some(task) = self.tasks.get_mut(&d.itt) else {
            return; // a task already ended (aborted): late data is dropped
        };
        let Some(w) = task.write.clone() else {
            return;
        };
        let at = d.buffer_offset as usize;
        if at != task.collected as usize || at + data.len() > w.len() {
            // Out of order or beyond the write: the session broke its own rules.
            return;
        }
        if let Ok(dst) = self.conn.data_mut(w.start + at..w.start + at + data.len()) {
            dst.copy_from_slice(data);
        }
        task.collected += data.len() as u32;
        if d.final_pdu {
            if d.ttt == Ttt::RESERVED {
                task.unsolicited = false;
            } else if task.r2t.is_some_and(|(t, _)| t == d.ttt) {
                task.r2t = None;
            }
        }
        self.advance(d.itt);
    }

    /// Asks the session for more write data, or sends the command once it is all here.
    fn advance(&mut self, itt: Itt) {
        let Some(task) = self.tasks.get_mut(&itt) else {
            return;
        };
        if task.sent || task.unsolicited || task.r2t.is_some() {
            return;
        }
        let want = task.write_len();
        if task.collected < want {
            let burst = self
                .params
                .as_ref()
                .map_or(262_144, |p| p.max_burst_length.max(512));
            let len = (want - task.collected).min(burst);
            let ttt = Ttt(self.next_ttt);
            self.next_ttt = self.next_ttt.wrapping_add(1).max(1);
            let r2t = R2t {
                lun: task.cmd.lun,
                itt,
                ttt,
                stat_sn: self.stat_sn.incremented(),
                exp_cmd_sn: self.exp_cmd_sn,
                max_cmd_sn: self.max_cmd_sn,
                r2t_sn: Sn(task.next_r2t_sn),
                buffer_offset: task.collected,
                desired_data_transfer_length: len,
            };
            task.next_r2t_sn = task.next_r2t_sn.wrapping_add(1);
            task.r2t = Some((ttt, task.collected + len));
            self.send_to_session(&Pdu::new(r2t));
            return;
        }
        self.ready.push_back(itt);
    }

    /// Sends ready commands and held control PDUs the transport takes now.
    fn retry(&mut self) -> bool {
        if self.closed {
            return false;
        }
        let mut any = false;
        while let Some(pdu) = self.parked.pop_front() {
            match &pdu.header {
                PduHeader::ScsiCommand(cmd) => {
                    let cmd = *cmd;
                    if let Err(pdu) = self.new_command(cmd, pdu) {
                        self.parked.push_front(pdu);
                        break;
                    }
                    any = true;
                }
                PduHeader::DataOut(d) => {
                    let d = *d;
                    self.data_out(&d, &pdu.data);
                }
                _ => {}
            }
        }
        while let Some(pdu) = self.control.front() {
            match self.conn.send_pdu(&pdu.header, &pdu.data) {
                Ok(()) => {
                    self.control.pop_front();
                    any = true;
                }
                Err(e) if busy(&e) => break,
                Err(e) => {
                    self.close(&e);
                    return true;
                }
            }
        }
        while let Some(&itt) = self.ready.front() {
            let Some(task) = self.tasks.get(&itt).filter(|t| t.ready()) else {
                self.ready.pop_front();
                continue;
            };
            let Some(p) = self.params.as_ref() else {
                break;
            };
            let limit = p.first_burst_length.min(p.target_recv_data_segment_length);
            let immediate = if p.immediate_data {
                task.immediate.min(limit).min(task.write_len())
            } else {
                0
            };
            let cmd = ScsiCommand {
                final_pdu: true,
                ..task.cmd
            };
            let io = CommandIo {
                read: task.read.clone(),
                write: task.write.clone(),
                immediate,
            };
            match self.conn.send_command(&cmd, &task.ahs, &io) {
                Ok(()) => {
                    if let Some(t) = self.tasks.get_mut(&itt) {
                        t.sent = true;
                    }
                    self.ready.pop_front();
                    any = true;
                }
                Err(e) if busy(&e) || e == IserError::BufferInFlight => break,
                Err(e) => {
                    self.close(&e);
                    return true;
                }
            }
        }
        any
    }

    // ---------------------------------------------------------------- target → session

    fn poll_transport(&mut self) -> bool {
        let mut any = false;
        loop {
            let ev = match self.conn.poll() {
                Ok(Some(ev)) => ev,
                Ok(None) => break,
                Err(e) => {
                    self.close(&e);
                    return true;
                }
            };
            any = true;
            match ev {
                InitiatorEvent::Pdu(rx) => match self.conn.take_pdu(rx) {
                    Ok(pdu) => self.on_target_pdu(pdu),
                    Err(e) => {
                        self.close(&e);
                        return true;
                    }
                },
                InitiatorEvent::Disconnected => self.close(&"the target disconnected"),
                InitiatorEvent::Failed(e) => self.close(&e),
                InitiatorEvent::Established | InitiatorEvent::HelloReply(_) => {}
            }
        }
        any
    }

    fn note_window(&mut self, h: &PduHeader) {
        let (stat, exp, max) = match h {
            PduHeader::ScsiResponse(x) => (Some(x.stat_sn), x.exp_cmd_sn, x.max_cmd_sn),
            PduHeader::NopIn(x) => (None, x.exp_cmd_sn, x.max_cmd_sn),
            PduHeader::TaskMgmtResponse(x) => (Some(x.stat_sn), x.exp_cmd_sn, x.max_cmd_sn),
            PduHeader::TextResponse(x) => (Some(x.stat_sn), x.exp_cmd_sn, x.max_cmd_sn),
            PduHeader::LogoutResponse(x) => (Some(x.stat_sn), x.exp_cmd_sn, x.max_cmd_sn),
            PduHeader::LoginResponse(x) => (Some(x.stat_sn), x.exp_cmd_sn, x.max_cmd_sn),
            PduHeader::AsyncMessage(x) => (None, x.exp_cmd_sn, x.max_cmd_sn),
            PduHeader::Reject(x) => (None, x.exp_cmd_sn, x.max_cmd_sn),
            _ => return,
        };
        if let Some(s) = stat {
            self.stat_sn = s;
        }
        if exp.serial_ge(self.exp_cmd_sn) || self.exp_cmd_sn == Sn(0) {
            self.exp_cmd_sn = exp;
        }
        if max.serial_ge(self.max_cmd_sn) || self.max_cmd_sn == Sn(0) {
            self.max_cmd_sn = max;
        }
    }

    fn on_target_pdu(&mut self, pdu: Pdu) {
        tracing::trace!(opcode = ?pdu.header.opcode(), itt = ?pdu.header.itt(), "iSER bridge: from the target");
        self.note_window(&pdu.header);
        match &pdu.header {
            PduHeader::ScsiResponse(r) => {
                let r = *r;
                self.response(r, pdu.data);
            }
            PduHeader::Reject(_) => {
                if let Some((Opcode::SCSI_COMMAND, itt)) =
                    rtgt_iser::credits::rejected_pdu(&pdu.data)
                {
                    self.forget(itt);
                }
                self.send_to_session(&pdu);
            }
            PduHeader::TaskMgmtResponse(t) => {
                let (itt, response) = (t.itt, t.response);
                self.tmf_done(itt, response);
                self.send_to_session(&pdu);
            }
            _ => self.send_to_session(&pdu),
        }
    }

    /// A SCSI Response: the read data the target placed goes to the session as Data-In,
    /// then the response.
    fn response(&mut self, mut r: ScsiResponse, sense: Vec<u8>) {
        let Some(task) = self.tasks.remove(&r.itt) else {
            self.send_to_session(&Pdu::with_data(r, sense));
            return;
        };
        let mut data_sn = 0u32;
        if let Some(range) = task.read.clone() {
            let expected = range.len() as u32;
            let good = matches!(r.status, ScsiStatus::GOOD | ScsiStatus::CONDITION_MET);
            // RFC 7145 §7.3.5: the residual tells what the target's RDMA Writes carried.
            let moved = match r.residual {
                Residual::Underflow(n) => expected.saturating_sub(n),
                _ if good => expected,
                _ => 0,
            };
            let seg = self.opts.local_segment.max(512);
            let mut off = 0u32;
            while off < moved {
                let len = seg.min(moved - off);
                let last = off + len == moved;
                let at = range.start + off as usize;
                let bytes = self
                    .conn
                    .data(at..at + len as usize)
                    .map(<[u8]>::to_vec)
                    .unwrap_or_default();
                let din = DataIn {
                    final_pdu: last,
                    lun: task.cmd.lun,
                    itt: r.itt,
                    ttt: Ttt::RESERVED,
                    exp_cmd_sn: r.exp_cmd_sn,
                    max_cmd_sn: r.max_cmd_sn,
                    data_sn: Sn(data_sn),
                    buffer_offset: off,
                    ..Default::default()
                };
                self.send_to_session(&Pdu::with_data(din, bytes));
                data_sn += 1;
                off += len;
            }
            r.exp_data_sn = Sn(data_sn);
        }
        self.release(&task);
        self.send_to_session(&Pdu::with_data(r, sense));
    }

    /// A task management response: tasks it ended go (their STags are invalidated).
    fn tmf_done(&mut self, itt: Itt, response: TmfResponse) {
        let Some((function, lun, referenced)) = self.tmfs.remove(&itt) else {
            return;
        };
        let ok = response == TmfResponse::FUNCTION_COMPLETE;
        let ended: Vec<Itt> = match function {
            TmfFunction::ABORT_TASK if ok || response == TmfResponse::TASK_DOES_NOT_EXIST => {
                vec![referenced]
            }
            TmfFunction::ABORT_TASK_SET
            | TmfFunction::CLEAR_TASK_SET
            | TmfFunction::LOGICAL_UNIT_RESET
                if ok =>
            {
                self.tasks
                    .iter()
                    .filter(|(_, t)| t.cmd.lun == lun)
                    .map(|(i, _)| *i)
                    .collect()
            }
            TmfFunction::TARGET_WARM_RESET | TmfFunction::TARGET_COLD_RESET if ok => {
                self.tasks.keys().copied().collect()
            }
            _ => Vec::new(),
        };
        for t in ended {
            if self.tasks.get(&t).is_some_and(|t| t.sent) {
                // ABORT TASK was handled by the transport; the others end here.
                if function != TmfFunction::ABORT_TASK {
                    let _ = self.conn.abort_local(t);
                }
            }
            self.forget(t);
        }
    }

    /// Drops a task and frees its data-area ranges (the transport keeps them reserved while
    /// its STags are being invalidated).
    fn forget(&mut self, itt: Itt) {
        if let Some(task) = self.tasks.remove(&itt) {
            self.release(&task);
        }
    }

    fn release(&mut self, task: &Task) {
        for r in [&task.read, &task.write].into_iter().flatten() {
            self.used.retain(|u| u != r);
        }
    }

    /// First-fit allocation of `len` bytes of the data area (empty for 0).
    fn alloc(&mut self, len: usize) -> Option<Range<usize>> {
        if len == 0 {
            return Some(0..0);
        }
        self.used.sort_by_key(|r| r.start);
        let mut at = 0;
        for u in &self.used {
            if u.start >= at + len {
                break;
            }
            at = at.max(u.end);
        }
        if at + len > self.opts.data_area {
            return None;
        }
        self.used.push(at..at + len);
        Some(at..at + len)
    }

    fn send_to_session(&mut self, pdu: &Pdu) {
        match pdu.to_bytes(Digests::NONE) {
            Ok(b) => self.out.extend_from_slice(&b),
            Err(e) => self.close(&e),
        }
    }

    fn send_session_reject(&mut self, rejected: &PduHeader, reason: RejectReason) {
        let bhs = rejected.encode(rtgt_pdu::BhsLengths::ZERO);
        let rj = Reject {
            reason,
            stat_sn: self.stat_sn.incremented(),
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn,
            ..Default::default()
        };
        self.send_to_session(&Pdu::with_data(
            rj,
            bhs.get(..BHS_LEN).unwrap_or(&[]).to_vec(),
        ));
    }

    fn write_session(&mut self) -> bool {
        let mut any = false;
        while self.out_pos < self.out.len() {
            match self.sock.write(self.out.get(self.out_pos..).unwrap_or(&[])) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => {
                    self.out_pos += n;
                    any = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.eof = true;
                    break;
                }
            }
        }
        if self.out_pos >= self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        } else if self.out_pos > 1 << 20 {
            self.out.drain(..self.out_pos);
            self.out_pos = 0;
        }
        any
    }
}

/// Whether the transport refused for lack of resources (retry after completions).
fn busy(e: &IserError) -> bool {
    matches!(
        e,
        IserError::NoSendResources | IserError::UnexpectedCredit(_)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_offer_rdma_extensions_without_digests() {
        let mut c = rtgt_pdu::negotiation::LocalConfig::default();
        IserOptions::default().apply(&mut c);
        assert!(c.rdma_extensions);
        assert_eq!(c.header_digests, [rtgt_pdu::negotiation::Digest::None]);
        assert_eq!(c.target_recv_data_segment_length, 65_536);
        assert_eq!(c.max_outstanding_unexpected_pdus, 8);
    }

    #[test]
    fn a_fabric_without_a_listener_refuses_the_connection() {
        let fabric = SoftFabric::new();
        let err = IserFabric::Soft(fabric)
            .connect("192.0.2.77:3260".parse().unwrap(), &IserOptions::default())
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        assert!(err.to_string().contains("192.0.2.77:3260"), "{err}");
    }
}
