//! A blocking, one-command-at-a-time session for management work (discovery, INQUIRY, READ
//! CAPACITY, single reads and writes, TMF, NOP, logout — RFC 7143 §3.2 full feature phase with
//! queue depth 1). Bulk IO uses the pipelined [`crate::engine`] instead; both run the same
//! sans-IO initiator of `rtgt-session`.
//!
//! ```no_run
//! use rtgt_client::{Client, ConnectOptions, IscsiUrl};
//!
//! let url: IscsiUrl = "iscsi://127.0.0.1:3260/iqn.2026-11.io.rtgt:default/0".parse()?;
//! let mut c = Client::connect(&url, &ConnectOptions::default().with_url_credentials(&url))?;
//! let cap = c.capacity()?;
//! println!("{} blocks of {} bytes", cap.blocks, cap.block_len);
//! c.logout()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::time::{Duration, Instant};

use rtgt_pdu::{
    AsyncEvent, LogoutReason, Lun, Pdu, PduHeader, Residual, Sn, TmfFunction, TmfResponse,
};
use rtgt_session::initiator::discovery::{DiscoveredTarget, SEND_TARGETS_ALL, parse_send_targets};
use rtgt_session::initiator::{
    ConnId, Direction, Event, LoginOutcome, ScsiRequest, Session, TaskId,
};

use crate::connect::{ConnectOptions, LoginRequestSpec, login, random_isid};
use crate::error::{ClientError, Result};
use crate::scsi::{Capacity, Cdb, ScsiFailure, Sense, StandardInquiry, VpdPage, parse_report_luns};
use crate::url::{IscsiUrl, Portal};
use crate::wire::PduStream;

/// Data direction of a command run through [`Client::execute`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataDir {
    /// No data.
    None,
    /// Read into the buffer.
    Read,
    /// Write the buffer.
    Write,
}

/// A command that completed with GOOD status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandResult {
    /// Data-In bytes received.
    pub transferred: u32,
    /// Residual reported by the target.
    pub residual: Residual,
}

/// One logged-in session with a single connection, used synchronously.
#[derive(Debug)]
pub struct Client {
    stream: PduStream,
    session: Session,
    conn: ConnId,
    outcome: LoginOutcome,
    lun: Lun,
    timeout: Duration,
    last_sense: Option<Sense>,
}

/// Runs a SendTargets=All discovery session against `portal` and logs out.
pub fn discover(portal: &Portal, opts: &ConnectOptions) -> Result<Vec<DiscoveredTarget>> {
    let spec = LoginRequestSpec {
        target: None,
        isid: random_isid(0),
        tsih: 0,
        cid: 0,
        cmd_sn: Sn(1),
    };
    let (stream, outcome) = login(portal, opts, &spec)?;
    let mut c = Client::from_login(stream, outcome, Lun::ZERO, opts.timeout);
    let task = c.session.text(c.conn, SEND_TARGETS_ALL.to_vec())?;
    c.flush(&[])?;
    let data = loop {
        match c.next_event(&mut [])? {
            Event::Text { task: t, data } if t == task => break data,
            other => Client::background(&other)?,
        }
    };
    let targets = parse_send_targets(&data)
        .map_err(|e| ClientError::Unexpected(format!("SendTargets answer: {e}")))?;
    c.logout()?;
    Ok(targets)
}

impl Client {
    /// Connects to the URL's portal and logs in to its target (a new session).
    pub fn connect(url: &IscsiUrl, opts: &ConnectOptions) -> Result<Self> {
        let spec = LoginRequestSpec {
            target: Some(&url.target),
            isid: random_isid(0),
            tsih: 0,
            cid: 0,
            cmd_sn: Sn(1),
        };
        let (stream, outcome) = login(&url.portal, opts, &spec)?;
        let lun = Lun::from_number(url.lun).unwrap_or_default();
        Ok(Self::from_login(stream, outcome, lun, opts.timeout))
    }

    /// Builds a client from a finished login.
    pub fn from_login(
        stream: PduStream,
        outcome: LoginOutcome,
        lun: Lun,
        timeout: Duration,
    ) -> Self {
        Self::from_login_with(stream, outcome, lun, timeout, 4, None)
    }

    /// Builds a client whose session has `queue_depth` task slots and the given keepalive, so
    /// that it can be handed to the engine afterwards ([`Client::into_parts`]).
    pub fn from_login_with(
        stream: PduStream,
        outcome: LoginOutcome,
        lun: Lun,
        timeout: Duration,
        queue_depth: u16,
        nop_interval: Option<Duration>,
    ) -> Self {
        let mut session = Session::new(outcome.session_setup());
        let mut setup = outcome.connection_setup(queue_depth);
        setup.nop_interval = nop_interval;
        setup.nop_timeout = timeout;
        let conn = session.add_connection(setup);
        Self {
            stream,
            session,
            conn,
            outcome,
            lun,
            timeout,
            last_sense: None,
        }
    }

    /// What the login negotiated.
    pub fn outcome(&self) -> &LoginOutcome {
        &self.outcome
    }

    /// The sans-IO session (window, parameters).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The LUN commands go to.
    pub fn lun(&self) -> Lun {
        self.lun
    }

    /// Sends everything the session has queued; `task_buf` backs Data-Out of the current task.
    fn flush(&mut self, task_buf: &[u8]) -> Result<()> {
        while let Some(out) = self.session.poll_transmit(self.conn) {
            self.stream.send_out(&out, task_buf)?;
        }
        Ok(())
    }

    /// Receives PDUs until one means something to the caller; Data-In is copied into `buf`.
    fn next_event(&mut self, buf: &mut [u8]) -> Result<Event> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ClientError::Timeout("the target's answer"));
            }
            if let Some(ev) = self.session.poll_event(self.conn) {
                return Ok(ev);
            }
            let Some(pdu) = self.stream.recv_within(left)? else {
                continue;
            };
            let ev = self
                .session
                .on_pdu(self.conn, &pdu.header, &pdu.data, Instant::now())?;
            if let Event::DataIn(p) = &ev {
                let start = p.offset as usize;
                let dst = buf.get_mut(start..start + pdu.data.len()).ok_or_else(|| {
                    ClientError::Unexpected("Data-In beyond the buffer".to_owned())
                })?;
                dst.copy_from_slice(&pdu.data);
                if let Some(done) = p.completion {
                    return Ok(Event::Complete(done));
                }
                continue;
            }
            if let Event::Complete(mut done) = ev {
                // Keep the sense bytes: `pdu.data` goes away with this iteration.
                self.last_sense = done.sense.and_then(|r| Sense::parse(r.of(&pdu.data)));
                done.sense = None;
                return Ok(Event::Complete(done));
            }
            return Ok(ev);
        }
    }

    /// Handles events that are not the answer being waited for.
    fn background(ev: &Event) -> Result<()> {
        match ev {
            Event::None | Event::Pong { .. } | Event::DataIn(_) => Ok(()),
            Event::Async(n) if n.event == AsyncEvent::SCSI_EVENT => Ok(()),
            Event::Async(n) => Err(ClientError::Unexpected(format!(
                "target sent asynchronous event {}",
                n.event
            ))),
            other => Err(ClientError::Unexpected(format!("unexpected {other:?}"))),
        }
    }

    /// Runs one SCSI command. For reads `buf` receives the data (its length is the expected
    /// transfer length); for writes `buf` is sent.
    pub fn execute(&mut self, cdb: &Cdb, dir: DataDir, buf: &mut [u8]) -> Result<CommandResult> {
        let len = u32::try_from(buf.len())
            .map_err(|_| ClientError::Config("transfer longer than 4 GiB".to_owned()))?;
        let direction = match dir {
            DataDir::None => Direction::None,
            DataDir::Read => Direction::Read(len),
            DataDir::Write => Direction::Write(len),
        };
        let req = ScsiRequest::new(self.lun, cdb.as_bytes(), direction);
        let sent = self.session.submit(self.conn, &req)?;
        self.stream.send_out(&sent.pdu, buf)?;
        self.flush(buf)?;
        self.wait_for(sent.task, buf)
    }

    fn wait_for(&mut self, task: TaskId, buf: &mut [u8]) -> Result<CommandResult> {
        self.last_sense = None;
        loop {
            let ev = self.next_event(buf)?;
            self.flush(buf)?;
            match ev {
                Event::Complete(done) if done.task == task => {
                    if done.is_good() {
                        return Ok(CommandResult {
                            transferred: done.transferred,
                            residual: done.residual,
                        });
                    }
                    return Err(ScsiFailure {
                        response: done.response,
                        status: done.status,
                        sense: self.last_sense.take(),
                        rejected: None,
                        aborted: false,
                    }
                    .into());
                }
                Event::Rejected {
                    reason,
                    task: Some(t),
                    ..
                } if t == task => {
                    return Err(ScsiFailure::rejected(reason).into());
                }
                Event::Aborted(t) if t == task => return Err(ScsiFailure::aborted().into()),
                other => Self::background(&other)?,
            }
        }
    }

    /// Runs a command, retrying while the LU reports UNIT ATTENTION (at most 5 times).
    pub fn execute_retry_ua(
        &mut self,
        cdb: &Cdb,
        dir: DataDir,
        buf: &mut [u8],
    ) -> Result<CommandResult> {
        let mut n = 0;
        loop {
            match self.execute(cdb, dir, buf) {
                Err(ClientError::Scsi(ScsiFailure {
                    sense: Some(Sense { key: 6, .. }),
                    ..
                })) if n < 5 => {
                    n += 1;
                }
                other => return other,
            }
        }
    }

    /// Standard INQUIRY data.
    pub fn inquiry(&mut self) -> Result<StandardInquiry> {
        let mut buf = vec![0u8; 96];
        let r = self.execute(&Cdb::inquiry(None, 96), DataDir::Read, &mut buf)?;
        let got = buf.get(..r.transferred as usize).unwrap_or(&[]);
        StandardInquiry::parse(got)
            .ok_or_else(|| ClientError::Unexpected(format!("INQUIRY data of {} bytes", got.len())))
    }

    /// One VPD page.
    pub fn vpd(&mut self, page: u8) -> Result<VpdPage> {
        let mut buf = vec![0u8; 1024];
        let r = self.execute(&Cdb::inquiry(Some(page), 1024), DataDir::Read, &mut buf)?;
        let got = buf.get(..r.transferred as usize).unwrap_or(&[]);
        VpdPage::parse(page, got)
            .ok_or_else(|| ClientError::Unexpected(format!("malformed VPD page {page:#04x}")))
    }

    /// Capacity from READ CAPACITY (16), falling back to (10).
    pub fn capacity(&mut self) -> Result<Capacity> {
        let mut buf = [0u8; 32];
        match self.execute_retry_ua(&Cdb::read_capacity16(), DataDir::Read, &mut buf) {
            Ok(r) => Capacity::parse16(buf.get(..r.transferred as usize).unwrap_or(&[]))
                .ok_or_else(|| ClientError::Unexpected("short READ CAPACITY (16) data".to_owned())),
            Err(ClientError::Scsi(f)) if f.sense.is_some_and(|s| s.key == 5) => {
                let mut buf = [0u8; 8];
                let r = self.execute_retry_ua(&Cdb::read_capacity10(), DataDir::Read, &mut buf)?;
                Capacity::parse10(buf.get(..r.transferred as usize).unwrap_or(&[])).ok_or_else(
                    || ClientError::Unexpected("short READ CAPACITY (10) data".to_owned()),
                )
            }
            Err(e) => Err(e),
        }
    }

    /// LUNs the target reports.
    pub fn report_luns(&mut self) -> Result<Vec<u64>> {
        let mut buf = vec![0u8; 4096];
        let r = self.execute_retry_ua(&Cdb::report_luns(4096), DataDir::Read, &mut buf)?;
        Ok(parse_report_luns(
            buf.get(..r.transferred as usize).unwrap_or(&[]),
        ))
    }

    /// TEST UNIT READY (clearing unit attentions).
    pub fn test_unit_ready(&mut self) -> Result<()> {
        self.execute_retry_ua(&Cdb::test_unit_ready(), DataDir::None, &mut [])
            .map(|_| ())
    }

    /// Reads `buf.len()` bytes at `lba` (`buf.len()` must be a multiple of the block length).
    pub fn read(&mut self, lba: u64, block_len: u32, buf: &mut [u8]) -> Result<()> {
        let blocks = (buf.len() / block_len.max(1) as usize) as u32;
        self.execute_retry_ua(&Cdb::read(lba, blocks, false), DataDir::Read, buf)
            .map(|_| ())
    }

    /// Writes `buf` at `lba`, optionally with FUA.
    pub fn write(&mut self, lba: u64, block_len: u32, buf: &mut [u8], fua: bool) -> Result<()> {
        let blocks = (buf.len() / block_len.max(1) as usize) as u32;
        self.execute_retry_ua(&Cdb::write(lba, blocks, fua), DataDir::Write, buf)
            .map(|_| ())
    }

    /// SYNCHRONIZE CACHE of the whole LU.
    pub fn synchronize_cache(&mut self) -> Result<()> {
        self.execute_retry_ua(&Cdb::synchronize_cache(), DataDir::None, &mut [])
            .map(|_| ())
    }

    /// NOP-Out ping; returns the round trip time.
    pub fn ping(&mut self) -> Result<Duration> {
        let start = Instant::now();
        let task = self.session.ping(self.conn, b"rtgt-ping".to_vec(), start)?;
        self.flush(&[])?;
        loop {
            match self.next_event(&mut [])? {
                Event::Pong { task: t, .. } if t == task => return Ok(start.elapsed()),
                other => Self::background(&other)?,
            }
        }
    }

    /// Sends a task management function and waits for its answer.
    pub fn task_management(
        &mut self,
        function: TmfFunction,
        referenced: Option<TaskId>,
    ) -> Result<TmfResponse> {
        let task = self
            .session
            .task_management(self.conn, function, self.lun, referenced)?;
        self.flush(&[])?;
        loop {
            match self.next_event(&mut [])? {
                Event::Tmf {
                    task: t, response, ..
                } if t == task => return Ok(response),
                Event::Aborted(_) => {}
                other => Self::background(&other)?,
            }
        }
    }

    /// Logs the session out and closes the connection.
    pub fn logout(mut self) -> Result<()> {
        let task = self
            .session
            .logout(self.conn, LogoutReason::CLOSE_SESSION)?;
        self.flush(&[])?;
        let result = loop {
            match self.next_event(&mut []) {
                Ok(Event::Logout {
                    task: t, response, ..
                }) if t == task => {
                    break if response == rtgt_pdu::LogoutResponseCode::SUCCESS {
                        Ok(())
                    } else {
                        Err(ClientError::Unexpected(format!(
                            "logout answered {response}"
                        )))
                    };
                }
                Ok(other) => {
                    if let Err(e) = Self::background(&other) {
                        break Err(e);
                    }
                }
                Err(e) => break Err(e),
            }
        };
        self.stream.shutdown();
        result
    }

    /// Gives up the connection without logging out (for the engine or for torture cases).
    pub fn into_parts(self) -> (PduStream, Session, ConnId, LoginOutcome) {
        (self.stream, self.session, self.conn, self.outcome)
    }

    /// Sends a raw PDU on this session's connection (torture cases).
    pub fn send_pdu(&mut self, pdu: &Pdu) -> Result<()> {
        self.stream.send_pdu(pdu)
    }

    /// Receives a raw PDU (torture cases); `None` on timeout.
    pub fn recv_raw(&mut self, timeout: Duration) -> Result<Option<Pdu>> {
        self.stream.recv_within(timeout)
    }

    /// The raw stream (torture cases).
    pub fn stream_mut(&mut self) -> &mut PduStream {
        &mut self.stream
    }

    /// Whether the header is a target PDU this client would process.
    pub fn is_target_pdu(h: &PduHeader) -> bool {
        h.opcode().is_target()
    }
}
