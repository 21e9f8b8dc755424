//! The negative cases. Each states what RFC 7143 requires and accepts every answer the RFC
//! allows; where it leaves a choice between a Reject and dropping the connection, both pass.

use std::time::Duration;

use rtgt_pdu::text::KeyValue;
use rtgt_pdu::{
    BHS_LEN, BhsLengths, DataOut, Itt, LoginStage, LoginStatus, LogoutReason, LogoutRequest,
    NopOut, Opcode, Pdu, RejectReason, ScsiStatus, Sn, SnackRequest, SnackType, TaskMgmtRequest,
    TmfFunction, TmfResponse, Ttt, header_digest,
};
use rtgt_session::chap::{ChapAlgorithm, format_hex, parse_binary};

use super::raw::{ANSWER, Obs, Raw, RawLogin, SILENCE};
use super::{Case, CaseOutcome, Ctx};
use crate::connect::{ConnectOptions, DigestChoice};

const WRITE10_16_BLOCKS: [u8; 10] = [0x2a, 0, 0, 0, 0, 0, 0, 0, 16, 0];
const READ10_1_BLOCK: [u8; 10] = [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0];

/// Every case, in the order they run.
pub fn cases() -> &'static [Case] {
    &CASES
}

static CASES: [Case; 33] = [
    Case {
        name: "unknown-opcode",
        description: "PDU with unassigned initiator opcode 0x0a",
        expected: "Reject 0x05 (command not supported) or drop",
        run: unknown_opcode,
    },
    Case {
        name: "vendor-opcode",
        description: "vendor-specific opcode 0x1c",
        expected: "Reject 0x05 or drop",
        run: vendor_opcode,
    },
    Case {
        name: "target-opcode-from-initiator",
        description: "a SCSI Response (0x21) sent to the target",
        expected: "Reject (0x04/0x05/0x09) or drop",
        run: target_opcode,
    },
    Case {
        name: "bad-ahs-length",
        description: "SCSI Command whose AHS overruns TotalAHSLength",
        expected: "Reject 0x09/0x04 or drop",
        run: bad_ahs,
    },
    Case {
        name: "read-and-write-without-bidi",
        description: "SCSI Command with R and W bits but no bidi AHS",
        expected: "CHECK CONDITION, Reject or drop",
        run: read_and_write,
    },
    Case {
        name: "reserved-logout-reason",
        description: "Logout Request with reserved reason 0x33",
        expected: "Reject (0x04/0x09) or drop",
        run: logout_reserved_reason,
    },
    Case {
        name: "reserved-tmf-function",
        description: "TMF with reserved function 0x3f",
        expected: "TMF response 5 (not supported) or 255, or Reject",
        run: tmf_reserved,
    },
    Case {
        name: "snack-at-erl0",
        description: "Status SNACK while ErrorRecoveryLevel=0",
        expected: "Reject (0x04/0x05) or drop",
        run: snack_erl0,
    },
    Case {
        name: "oversized-dsl-login",
        description: "Login Request with DataSegmentLength 16 MiB-1",
        expected: "login refused or connection dropped",
        run: oversized_dsl_login,
    },
    Case {
        name: "oversized-dsl-ffp",
        description: "NOP-Out with DataSegmentLength above MaxRecvDataSegmentLength",
        expected: "Reject or drop",
        run: oversized_dsl_ffp,
    },
    Case {
        name: "header-digest-error",
        description: "NOP-Out with a corrupted header digest",
        expected: "connection dropped (no reply)",
        run: header_digest_error,
    },
    Case {
        name: "data-digest-error",
        description: "NOP-Out ping data with a corrupted data digest",
        expected: "Reject 0x02 (data digest) or drop",
        run: data_digest_error,
    },
    Case {
        name: "first-pdu-not-login",
        description: "SCSI Command as the first PDU of a connection",
        expected: "connection dropped or login error",
        run: first_pdu_not_login,
    },
    Case {
        name: "non-login-pdu-during-login",
        description: "NOP-Out between two login requests",
        expected: "login status 0x020b / class 2, Reject, or drop",
        run: non_login_during_login,
    },
    Case {
        name: "login-bad-version",
        description: "Login with VersionMin 0x10",
        expected: "login status 0x0205 (unsupported version)",
        run: bad_version,
    },
    Case {
        name: "login-duplicate-key",
        description: "MaxBurstLength offered twice in one request",
        expected: "login refused (class 2) or Reject",
        run: duplicate_key,
    },
    Case {
        name: "login-overlong-key-name",
        description: "a 64-byte key name",
        expected: "login refused (class 2) or key NotUnderstood/Reject",
        run: overlong_key,
    },
    Case {
        name: "login-overlong-value",
        description: "TargetAlias-style key with a 300-byte value",
        expected: "login refused (class 2) or value Reject",
        run: overlong_value,
    },
    Case {
        name: "login-missing-initiator-name",
        description: "first login request without InitiatorName",
        expected: "login status 0x0207 (missing parameter) or class 2",
        run: missing_initiator_name,
    },
    Case {
        name: "chap-r-oversized",
        description: "CHAP_R of 1100 bytes",
        expected: "login status 0x0201 (authentication failure)",
        run: chap_r_oversized,
    },
    Case {
        name: "chap-r-odd-length",
        description: "CHAP_R one byte short of the digest length",
        expected: "login status 0x0201",
        run: chap_r_short,
    },
    Case {
        name: "chap-r-invalid",
        description: "CHAP_R that is not hex/base64",
        expected: "login status 0x0201",
        run: chap_r_invalid,
    },
    Case {
        name: "chap-r-wrong",
        description: "well-formed CHAP_R computed with a wrong secret",
        expected: "login status 0x0201",
        run: chap_r_wrong,
    },
    Case {
        name: "cmdsn-below-window",
        description: "command with CmdSN = ExpCmdSN - 1",
        expected: "silently ignored; session keeps working",
        run: cmdsn_below,
    },
    Case {
        name: "cmdsn-above-window",
        description: "command with CmdSN = MaxCmdSN + 1000",
        expected: "silently ignored; session keeps working",
        run: cmdsn_above,
    },
    Case {
        name: "cmdsn-wraparound",
        description: "40 commands across CmdSN 2^32-1 → 0",
        expected: "all complete GOOD",
        run: cmdsn_wrap,
    },
    Case {
        name: "dataout-wrong-datasn",
        description: "answer an R2T with DataSN 7",
        expected: "Reject, CHECK CONDITION or drop",
        run: dataout_wrong_datasn,
    },
    Case {
        name: "dataout-wrong-offset",
        description: "Data-Out outside the R2T's range",
        expected: "Reject, CHECK CONDITION or drop",
        run: dataout_wrong_offset,
    },
    Case {
        name: "dataout-wrong-ttt",
        description: "Data-Out with a TTT the target never issued",
        expected: "Reject, CHECK CONDITION or drop",
        run: dataout_wrong_ttt,
    },
    Case {
        name: "dataout-more-than-r2t",
        description: "512 bytes more Data-Out than the R2T asked",
        expected: "Reject, CHECK CONDITION or drop",
        run: dataout_overrun,
    },
    Case {
        name: "tmf-abort-unknown-task",
        description: "ABORT TASK for a tag never used, RefCmdSN outside the window",
        expected: "TMF response 1 (task does not exist)",
        run: tmf_abort_unknown,
    },
    Case {
        name: "logout-during-io",
        description: "Logout while 8 reads are outstanding",
        expected: "Logout Response success",
        run: logout_during_io,
    },
    Case {
        name: "abrupt-close-mid-pdu",
        description: "half a SCSI Command then close; half a write's data then close",
        expected: "target survives",
        run: abrupt_close,
    },
];

fn login_or_skip(ctx: &Ctx, opts: &ConnectOptions, cmd_sn: Sn) -> Result<Raw, CaseOutcome> {
    Raw::login(ctx, opts, cmd_sn).map_err(|e| CaseOutcome::fail(format!("setup login failed: {e}")))
}

fn plain(ctx: &Ctx) -> Result<Raw, CaseOutcome> {
    login_or_skip(ctx, &ctx.opts, Sn(1))
}

/// A BHS with only the opcode and the sequence fields a command carries.
fn raw_bhs(r: &mut Raw, opcode: u8) -> [u8; BHS_LEN] {
    let mut b = [0u8; BHS_LEN];
    b[0] = opcode;
    b[1] = 0x80;
    let itt = r.itt();
    b[16..20].copy_from_slice(&itt.0.to_be_bytes());
    b[24..28].copy_from_slice(&r.cmd_sn.0.to_be_bytes());
    b[28..32].copy_from_slice(&r.exp_stat_sn.0.to_be_bytes());
    b
}

/// Sends raw header bytes (appending a header digest when negotiated).
fn send_bhs(r: &mut Raw, bhs: &[u8], trailer: &[u8]) -> Result<(), Obs> {
    let mut bytes = bhs.to_vec();
    if r.stream.digests().header {
        let (b, ahs) = bhs
            .split_first_chunk::<BHS_LEN>()
            .unwrap_or((&[0; BHS_LEN], &[]));
        bytes.extend_from_slice(&header_digest(b, ahs).to_le_bytes());
    }
    bytes.extend_from_slice(trailer);
    r.stream
        .send_raw(&bytes)
        .map_err(|e| Obs::Closed(e.to_string()))
}

/// After a Reject the session must keep working; after a drop there is nothing to check.
fn reject_or_drop(r: &mut Raw, obs: &Obs, reasons: &[RejectReason]) -> CaseOutcome {
    if obs.is_reject(reasons) {
        // Whether a rejected command consumed its CmdSN is the target's to say: continue from
        // the ExpCmdSN the Reject carried.
        r.cmd_sn = r.exp_cmd_sn;
        return match r.still_serves() {
            Ok(()) => CaseOutcome::pass(format!("{obs}; session still serves")),
            Err(e) => CaseOutcome::fail(format!("{obs}; then {e}")),
        };
    }
    CaseOutcome::check(obs.is_closed(), obs.to_string())
}

fn unknown_opcode(ctx: &Ctx) -> CaseOutcome {
    opcode_case(ctx, 0x0a)
}

fn vendor_opcode(ctx: &Ctx) -> CaseOutcome {
    opcode_case(ctx, 0x1c)
}

fn opcode_case(ctx: &Ctx, op: u8) -> CaseOutcome {
    let mut r = match plain(ctx) {
        Ok(r) => r,
        Err(o) => return o,
    };
    let b = raw_bhs(&mut r, op);
    let obs = match send_bhs(&mut r, &b, &[]) {
        Ok(()) => r.observe(ANSWER),
        Err(o) => o,
    };
    reject_or_drop(&mut r, &obs, &[RejectReason::COMMAND_NOT_SUPPORTED])
}

fn target_opcode(ctx: &Ctx) -> CaseOutcome {
    let mut r = match plain(ctx) {
        Ok(r) => r,
        Err(o) => return o,
    };
    let b = raw_bhs(&mut r, Opcode::SCSI_RESPONSE.0);
    let obs = match send_bhs(&mut r, &b, &[]) {
        Ok(()) => r.observe(ANSWER),
        Err(o) => o,
    };
    reject_or_drop(
        &mut r,
        &obs,
        &[
            RejectReason::COMMAND_NOT_SUPPORTED,
            RejectReason::PROTOCOL_ERROR,
            RejectReason::INVALID_PDU_FIELD,
        ],
    )
}

fn bad_ahs(ctx: &Ctx) -> CaseOutcome {
    let mut r = match plain(ctx) {
        Ok(r) => r,
        Err(o) => return o,
    };
    let cmd = r.command(&READ10_1_BLOCK, true, false, 512);
    let mut bhs = cmd.encode(BhsLengths::ZERO).to_vec();
    // One AHS word whose AHSLength claims 40 bytes of extended CDB.
    bhs[4] = 1;
    bhs.extend_from_slice(&[0, 40, 1, 0]);
    let obs = match send_bhs(&mut r, &bhs, &[]) {
        Ok(()) => r.observe_for(cmd.itt, ANSWER),
        Err(o) => o,
    };
    reject_or_drop(
        &mut r,
        &obs,
        &[
            RejectReason::INVALID_PDU_FIELD,
            RejectReason::PROTOCOL_ERROR,
        ],
    )
}

fn read_and_write(ctx: &Ctx) -> CaseOutcome {
    let mut r = match plain(ctx) {
        Ok(r) => r,
        Err(o) => return o,
    };
    let cmd = r.command(&READ10_1_BLOCK, true, true, 512);
    let obs = match r.send(cmd, Vec::new()) {
        Ok(()) => r.observe_for(cmd.itt, ANSWER),
        Err(e) => Obs::Closed(e.to_string()),
    };
    if obs.is_check_condition() {
        return match r.still_serves() {
            Ok(()) => CaseOutcome::pass(format!("{obs}; session still serves")),
            Err(e) => CaseOutcome::fail(format!("{obs}; then {e}")),
        };
    }
    reject_or_drop(
        &mut r,
        &obs,
        &[
            RejectReason::PROTOCOL_ERROR,
            RejectReason::INVALID_PDU_FIELD,
            RejectReason::COMMAND_NOT_SUPPORTED,
        ],
    )
}

fn logout_reserved_reason(ctx: &Ctx) -> CaseOutcome {
    let mut r = match plain(ctx) {
        Ok(r) => r,
        Err(o) => return o,
    };
    let itt = r.itt();
    let req = LogoutRequest {
        immediate: true,
        reason: LogoutReason(0x33),
        itt,
        cid: 0,
        cmd_sn: r.cmd_sn,
        exp_stat_sn: r.exp_stat_sn,
    };
    let obs = match r.send(req, Vec::new()) {
        Ok(()) => r.observe(ANSWER),
        Err(e) => Obs::Closed(e.to_string()),
    };
    if matches!(obs, Obs::Logout(code) if code != rtgt_pdu::LogoutResponseCode::SUCCESS) {
        return CaseOutcome::pass(obs.to_string());
    }
    reject_or_drop(
        &mut r,
        &obs,
        &[
            RejectReason::PROTOCOL_ERROR,
            RejectReason::INVALID_PDU_FIELD,
        ],
    )
}

fn tmf_reserved(ctx: &Ctx) -> CaseOutcome {
    let mut r = match plain(ctx) {
        Ok(r) => r,
        Err(o) => return o,
    };
    let itt = r.itt();
    let req = TaskMgmtRequest {
        immediate: true,
        function: TmfFunction(0x3f),
        lun: r.lun,
        itt,
        referenced_task_tag: Itt::RESERVED,
        cmd_sn: r.cmd_sn,
        exp_stat_sn: r.exp_stat_sn,
        ref_cmd_sn: Sn(0),
        exp_data_sn: Sn(0),
    };
    let obs = match r.send(req, Vec::new()) {
        Ok(()) => r.observe(ANSWER),
        Err(e) => Obs::Closed(e.to_string()),
    };
    match obs {
        Obs::Tmf(TmfResponse::FUNCTION_NOT_SUPPORTED | TmfResponse::FUNCTION_REJECTED) => {
            match r.still_serves() {
                Ok(()) => CaseOutcome::pass(format!("{obs}; session still serves")),
                Err(e) => CaseOutcome::fail(format!("{obs}; then {e}")),
            }
        }
        other => reject_or_drop(
            &mut r,
            &other,
            &[
                RejectReason::PROTOCOL_ERROR,
                RejectReason::INVALID_PDU_FIELD,
            ],
        ),
    }
}

fn snack_erl0(ctx: &Ctx) -> CaseOutcome {
    let mut r = match plain(ctx) {
        Ok(r) => r,
        Err(o) => return o,
    };
    let snack = SnackRequest {
        snack_type: SnackType::STATUS,
        lun: r.lun,
        itt: Itt::RESERVED,
        ttt: Ttt::RESERVED,
        exp_stat_sn: r.exp_stat_sn,
        beg_run: r.exp_stat_sn.0.wrapping_sub(1),
        run_length: 1,
    };
    let obs = match r.send(snack, Vec::new()) {
        Ok(()) => r.observe(ANSWER),
        Err(e) => Obs::Closed(e.to_string()),
    };
    reject_or_drop(
        &mut r,
        &obs,
        &[
            RejectReason::PROTOCOL_ERROR,
            RejectReason::COMMAND_NOT_SUPPORTED,
            RejectReason::SNACK_REJECT,
        ],
    )
}

fn oversized_dsl_login(ctx: &Ctx) -> CaseOutcome {
    let mut l = match RawLogin::connect(ctx) {
        Ok(l) => l,
        Err(e) => return CaseOutcome::fail(format!("connect: {e}")),
    };
    let h = l.request(
        LoginStage::SECURITY_NEGOTIATION,
        Some(LoginStage::OPERATIONAL_NEGOTIATION),
    );
    let mut bhs = h.encode(BhsLengths::ZERO);
    bhs[5..8].copy_from_slice(&[0xff, 0xff, 0xff]);
    if let Err(e) = l.stream.send_raw(&bhs) {
        return CaseOutcome::pass(format!("connection closed ({e})"));
    }
    // Send a little of the announced data: a correct target refuses before reading 16 MiB.
    let _ = l.stream.send_raw(&[b'A'; 1024]);
    let obs = l.answer();
    match obs {
        Obs::Login { status, .. } if status.class().0 >= 2 => CaseOutcome::pass(obs.to_string()),
        Obs::Closed(_) => CaseOutcome::pass(obs.to_string()),
        Obs::Timeout => CaseOutcome::check(
            l.stream.closed_within(ANSWER),
            "no answer; connection not closed",
        ),
        other => CaseOutcome::fail(other.to_string()),
    }
}

fn oversized_dsl_ffp(ctx: &Ctx) -> CaseOutcome {
    let mut r = match plain(ctx) {
        Ok(r) => r,
        Err(o) => return o,
    };
    let limit = r.outcome.connection.max_xmit_data_segment_length;
    let itt = r.itt();
    let nop = NopOut {
        immediate: true,
        itt,
        ttt: Ttt::RESERVED,
        cmd_sn: r.cmd_sn,
        exp_stat_sn: r.exp_stat_sn,
        ..NopOut::default()
    };
    let len = (limit + 4096).min(rtgt_pdu::MAX_DATA_SEGMENT_LEN);
    let bhs = nop.encode(BhsLengths::data_bounded(len));
    let data = vec![0x5a; rtgt_pdu::padded_len(len as usize)];
    let obs = match send_bhs(&mut r, &bhs, &[]) {
        Ok(()) => {
            // The target may drop while we send: that is an acceptable answer.
            match r.stream.send_raw(&data) {
                Ok(()) => r.observe(ANSWER),
                Err(e) => Obs::Closed(e.to_string()),
            }
        }
        Err(o) => o,
    };
    reject_or_drop(
        &mut r,
        &obs,
        &[
            RejectReason::PROTOCOL_ERROR,
            RejectReason::INVALID_PDU_FIELD,
        ],
    )
}

fn with_digests(ctx: &Ctx, header: bool) -> Result<Raw, CaseOutcome> {
    let mut opts = ctx.opts.clone();
    if header {
        opts.header_digest = DigestChoice::Crc32c;
    } else {
        opts.data_digest = DigestChoice::Crc32c;
    }
    Raw::login(ctx, &opts, Sn(1))
        .map_err(|e| CaseOutcome::skip(format!("target does not negotiate the digest: {e}")))
}

fn header_digest_error(ctx: &Ctx) -> CaseOutcome {
    let mut r = match with_digests(ctx, true) {
        Ok(r) => r,
        Err(o) => return o,
    };
    let itt = r.itt();
    let nop = NopOut {
        immediate: true,
        itt,
        ttt: Ttt::RESERVED,
        cmd_sn: r.cmd_sn,
        exp_stat_sn: r.exp_stat_sn,
        ..NopOut::default()
    };
    let bhs = nop.encode(BhsLengths::ZERO);
    let mut bytes = bhs.to_vec();
    bytes.extend_from_slice(&(header_digest(&bhs, &[]) ^ 0xdead_beef).to_le_bytes());
    if let Err(e) = r.stream.send_raw(&bytes) {
        return CaseOutcome::pass(format!("connection closed ({e})"));
    }
    let obs = r.observe(ANSWER);
    match obs {
        Obs::Closed(_) => CaseOutcome::pass(obs.to_string()),
        Obs::Timeout => CaseOutcome::check(
            r.stream.closed_within(ANSWER),
            "no answer; connection stayed open",
        ),
        other => CaseOutcome::fail(format!(
            "{other} (a PDU with a bad header digest must not be answered)"
        )),
    }
}

fn data_digest_error(ctx: &Ctx) -> CaseOutcome {
    let mut r = match with_digests(ctx, false) {
        Ok(r) => r,
        Err(o) => return o,
    };
    let itt = r.itt();
    let nop = NopOut {
        immediate: true,
        itt,
        ttt: Ttt::RESERVED,
        cmd_sn: r.cmd_sn,
        exp_stat_sn: r.exp_stat_sn,
        ..NopOut::default()
    };
    let payload = b"ping-data".to_vec();
    let mut wire = match Pdu::with_data(nop, payload).to_bytes(r.stream.digests()) {
        Ok(w) => w,
        Err(e) => return CaseOutcome::fail(format!("encode: {e}")),
    };
    if let Some(last) = wire.last_mut() {
        *last ^= 0xff;
    }
    let obs = match r.stream.send_raw(&wire) {
        Ok(()) => r.observe(ANSWER),
        Err(e) => Obs::Closed(e.to_string()),
    };
    reject_or_drop(&mut r, &obs, &[RejectReason::DATA_DIGEST_ERROR])
}

fn first_pdu_not_login(ctx: &Ctx) -> CaseOutcome {
    let mut l = match RawLogin::connect(ctx) {
        Ok(l) => l,
        Err(e) => return CaseOutcome::fail(format!("connect: {e}")),
    };
    let mut cdb = [0u8; 16];
    cdb[..10].copy_from_slice(&READ10_1_BLOCK);
    let cmd = rtgt_pdu::ScsiCommand {
        final_pdu: true,
        read: true,
        itt: Itt(1),
        expected_data_transfer_length: 512,
        cmd_sn: Sn(1),
        cdb,
        ..Default::default()
    };
    if let Err(e) = l.stream.send_pdu(&Pdu::new(cmd)) {
        return CaseOutcome::pass(format!("connection closed ({e})"));
    }
    let obs = l.answer();
    match obs {
        Obs::Closed(_) => CaseOutcome::pass(obs.to_string()),
        Obs::Login { status, .. } if status.class().0 >= 2 => CaseOutcome::pass(obs.to_string()),
        Obs::Reject { .. } => {
            CaseOutcome::check(l.stream.closed_within(ANSWER), format!("{obs}, then close"))
        }
        Obs::Timeout => CaseOutcome::check(l.stream.closed_within(ANSWER), "no answer"),
        other => CaseOutcome::fail(other.to_string()),
    }
}

fn non_login_during_login(ctx: &Ctx) -> CaseOutcome {
    let mut l = match RawLogin::connect(ctx) {
        Ok(l) => l,
        Err(e) => return CaseOutcome::fail(format!("connect: {e}")),
    };
    let mut keys = RawLogin::identity(ctx);
    keys.push(KeyValue::new(
        "AuthMethod",
        if ctx.opts.chap.is_some() {
            "CHAP"
        } else {
            "None"
        },
    ));
    let first = l.exchange(l.request(LoginStage::SECURITY_NEGOTIATION, None), &keys);
    if first.login_class() != Some(0) {
        return CaseOutcome::fail(format!("first login request: {first}"));
    }
    let nop = NopOut {
        immediate: true,
        itt: Itt(9),
        ttt: Ttt::RESERVED,
        cmd_sn: Sn(1),
        exp_stat_sn: l.exp_stat_sn,
        ..NopOut::default()
    };
    if let Err(e) = l.stream.send_pdu(&Pdu::new(nop)) {
        return CaseOutcome::pass(format!("connection closed ({e})"));
    }
    let obs = l.answer();
    match obs {
        Obs::Login { status, .. } if status.class().0 == 2 => CaseOutcome::pass(obs.to_string()),
        Obs::Closed(_) | Obs::Reject { .. } => CaseOutcome::pass(obs.to_string()),
        Obs::Timeout => CaseOutcome::check(l.stream.closed_within(ANSWER), "no answer"),
        other => CaseOutcome::fail(other.to_string()),
    }
}

fn bad_version(ctx: &Ctx) -> CaseOutcome {
    let mut l = match RawLogin::connect(ctx) {
        Ok(l) => l,
        Err(e) => return CaseOutcome::fail(format!("connect: {e}")),
    };
    let mut h = l.request(
        LoginStage::SECURITY_NEGOTIATION,
        Some(LoginStage::OPERATIONAL_NEGOTIATION),
    );
    h.version_max = 0x10;
    h.version_min = 0x10;
    let mut keys = RawLogin::identity(ctx);
    keys.push(KeyValue::new("AuthMethod", "None"));
    let obs = l.exchange(h, &keys);
    CaseOutcome::check(
        matches!(
            obs,
            Obs::Login {
                status: LoginStatus::UNSUPPORTED_VERSION,
                ..
            }
        ),
        obs.to_string(),
    )
}

/// A full security + operational login exchange with extra operational keys.
fn operational_with(ctx: &Ctx, extra: &[u8]) -> Obs {
    if ctx.opts.chap.is_some() {
        return Obs::Other(Opcode(0xff));
    }
    let mut l = match RawLogin::connect(ctx) {
        Ok(l) => l,
        Err(e) => return Obs::Closed(e.to_string()),
    };
    let mut keys = RawLogin::identity(ctx);
    keys.push(KeyValue::new("AuthMethod", "None"));
    let first = l.exchange(
        l.request(
            LoginStage::SECURITY_NEGOTIATION,
            Some(LoginStage::OPERATIONAL_NEGOTIATION),
        ),
        &keys,
    );
    if first.login_class() != Some(0) {
        return first;
    }
    let mut text = rtgt_pdu::text::encode_pairs(&[
        KeyValue::new("HeaderDigest", "None"),
        KeyValue::new("DataDigest", "None"),
    ]);
    text.extend_from_slice(extra);
    l.exchange_bytes(
        l.request(
            LoginStage::OPERATIONAL_NEGOTIATION,
            Some(LoginStage::FULL_FEATURE_PHASE),
        ),
        text,
    )
}

fn no_chap_needed(ctx: &Ctx) -> Option<CaseOutcome> {
    ctx.opts
        .chap
        .is_some()
        .then(|| CaseOutcome::skip("runs only against a target without CHAP"))
}

fn duplicate_key(ctx: &Ctx) -> CaseOutcome {
    if let Some(s) = no_chap_needed(ctx) {
        return s;
    }
    let obs = operational_with(ctx, b"MaxBurstLength=65536\0MaxBurstLength=131072\0");
    match &obs {
        Obs::Login { status, .. } if status.class().0 == 2 => CaseOutcome::pass(obs.to_string()),
        Obs::Reject { .. } | Obs::Closed(_) => CaseOutcome::pass(obs.to_string()),
        other => CaseOutcome::fail(format!("{other}: login went on")),
    }
}

fn overlong_key(ctx: &Ctx) -> CaseOutcome {
    if let Some(s) = no_chap_needed(ctx) {
        return s;
    }
    let name = "X-".to_owned() + &"k".repeat(62);
    let obs = operational_with(ctx, format!("{name}=1\0").as_bytes());
    match &obs {
        Obs::Login { status, .. } if status.class().0 == 2 => CaseOutcome::pass(obs.to_string()),
        Obs::Login { status, text, .. } if status.class().0 == 0 => {
            let v = RawLogin::value(text, &name);
            CaseOutcome::check(
                matches!(v, Some("NotUnderstood" | "Reject")),
                format!("{obs}; key answered {v:?}"),
            )
        }
        Obs::Reject { .. } | Obs::Closed(_) => CaseOutcome::pass(obs.to_string()),
        other => CaseOutcome::fail(other.to_string()),
    }
}

fn overlong_value(ctx: &Ctx) -> CaseOutcome {
    if let Some(s) = no_chap_needed(ctx) {
        return s;
    }
    let obs = operational_with(
        ctx,
        format!("MaxBurstLength={}\0", "1".repeat(300)).as_bytes(),
    );
    match &obs {
        Obs::Login { status, .. } if status.class().0 == 2 => CaseOutcome::pass(obs.to_string()),
        Obs::Login { status, text, .. } if status.class().0 == 0 => {
            let v = RawLogin::value(text, "MaxBurstLength");
            CaseOutcome::check(
                v == Some("Reject"),
                format!("{obs}; MaxBurstLength answered {v:?}"),
            )
        }
        Obs::Reject { .. } | Obs::Closed(_) => CaseOutcome::pass(obs.to_string()),
        other => CaseOutcome::fail(other.to_string()),
    }
}

fn missing_initiator_name(ctx: &Ctx) -> CaseOutcome {
    let mut l = match RawLogin::connect(ctx) {
        Ok(l) => l,
        Err(e) => return CaseOutcome::fail(format!("connect: {e}")),
    };
    let keys = [
        KeyValue::new("SessionType", "Normal"),
        KeyValue::new("TargetName", ctx.url.target.clone()),
        KeyValue::new("AuthMethod", "None"),
    ];
    let obs = l.exchange(
        l.request(
            LoginStage::SECURITY_NEGOTIATION,
            Some(LoginStage::OPERATIONAL_NEGOTIATION),
        ),
        &keys,
    );
    match &obs {
        Obs::Login { status, .. } if status.class().0 == 2 => CaseOutcome::pass(obs.to_string()),
        Obs::Closed(_) => CaseOutcome::pass(obs.to_string()),
        other => CaseOutcome::fail(other.to_string()),
    }
}

/// Runs CHAP up to the response and sends `make(challenge, algorithm, id)` as CHAP_R.
fn chap_case(ctx: &Ctx, make: fn(&[u8], ChapAlgorithm, u8, &[u8]) -> String) -> CaseOutcome {
    let Some(creds) = ctx.opts.chap.clone() else {
        return CaseOutcome::skip("no CHAP credentials given");
    };
    let mut l = match RawLogin::connect(ctx) {
        Ok(l) => l,
        Err(e) => return CaseOutcome::fail(format!("connect: {e}")),
    };
    let mut keys = RawLogin::identity(ctx);
    keys.push(KeyValue::new("AuthMethod", "CHAP"));
    let first = l.exchange(l.request(LoginStage::SECURITY_NEGOTIATION, None), &keys);
    let Obs::Login {
        status: LoginStatus::SUCCESS,
        text,
        ..
    } = &first
    else {
        return CaseOutcome::fail(format!("AuthMethod=CHAP: {first}"));
    };
    if RawLogin::value(text, "AuthMethod") != Some("CHAP") {
        return CaseOutcome::skip(format!("target does not use CHAP ({text})"));
    }
    let algs: Vec<String> = creds
        .algorithms
        .iter()
        .map(|a| a.iana().to_string())
        .collect();
    let second = l.exchange(
        l.request(LoginStage::SECURITY_NEGOTIATION, None),
        &[KeyValue::new("CHAP_A", algs.join(","))],
    );
    let Obs::Login {
        status: LoginStatus::SUCCESS,
        text,
        ..
    } = &second
    else {
        return CaseOutcome::fail(format!("CHAP_A: {second}"));
    };
    let (Some(a), Some(i), Some(c)) = (
        RawLogin::value(text, "CHAP_A")
            .and_then(|a| a.parse().ok())
            .and_then(ChapAlgorithm::from_iana),
        RawLogin::value(text, "CHAP_I").and_then(|i| i.parse::<u8>().ok()),
        RawLogin::value(text, "CHAP_C").and_then(|c| parse_binary(c).ok()),
    ) else {
        return CaseOutcome::fail(format!("no usable challenge in {text:?}"));
    };
    let response = make(&c, a, i, &creds.secret);
    let obs = l.exchange(
        l.request(
            LoginStage::SECURITY_NEGOTIATION,
            Some(LoginStage::OPERATIONAL_NEGOTIATION),
        ),
        &[
            KeyValue::new("CHAP_N", creds.user.clone()),
            KeyValue::new("CHAP_R", response),
        ],
    );
    match &obs {
        Obs::Login {
            status: LoginStatus::AUTHENTICATION_FAILURE,
            ..
        } => CaseOutcome::pass(obs.to_string()),
        Obs::Login { status, .. } if status.class().0 == 2 => CaseOutcome::fail(format!(
            "{obs} (class 2 but not 0x0201 authentication failure)"
        )),
        other => CaseOutcome::fail(other.to_string()),
    }
}

fn chap_r_oversized(ctx: &Ctx) -> CaseOutcome {
    chap_case(ctx, |_, _, _, _| format_hex(&[0xab; 1100]))
}

fn chap_r_short(ctx: &Ctx) -> CaseOutcome {
    chap_case(ctx, |c, a, i, s| {
        let r = a.response(i, s, c);
        let b = r.as_bytes();
        format_hex(b.get(..b.len() - 1).unwrap_or(b))
    })
}

fn chap_r_invalid(ctx: &Ctx) -> CaseOutcome {
    chap_case(ctx, |_, _, _, _| "0xzz-not-hex".to_owned())
}

fn chap_r_wrong(ctx: &Ctx) -> CaseOutcome {
    chap_case(ctx, |c, a, i, s| {
        let mut wrong = s.to_vec();
        wrong.push(b'!');
        a.response(i, &wrong, c).to_hex()
    })
}

/// Sends a TEST UNIT READY with a chosen CmdSN and expects silence, then a working session.
fn cmdsn_case(ctx: &Ctx, pick: fn(&Raw) -> Sn) -> CaseOutcome {
    let mut r = match plain(ctx) {
        Ok(r) => r,
        Err(o) => return o,
    };
    let mut cmd = r.command(&[0; 6], false, false, 0);
    // Give the CmdSN back: this command does not use it.
    r.cmd_sn = cmd.cmd_sn;
    cmd.cmd_sn = pick(&r);
    let sent_sn = cmd.cmd_sn;
    if let Err(e) = r.send(cmd, Vec::new()) {
        return CaseOutcome::fail(format!("send: {e}"));
    }
    let obs = r.observe_for(cmd.itt, SILENCE);
    if !matches!(obs, Obs::Timeout) {
        return CaseOutcome::fail(format!("CmdSN {sent_sn} answered: {obs}"));
    }
    match r.still_serves() {
        Ok(()) => CaseOutcome::pass(format!("CmdSN {sent_sn} ignored; session still serves")),
        Err(e) => CaseOutcome::fail(format!("CmdSN {sent_sn} ignored, but {e}")),
    }
}

fn cmdsn_below(ctx: &Ctx) -> CaseOutcome {
    cmdsn_case(ctx, |r| Sn(r.exp_cmd_sn.0.wrapping_sub(1)))
}

fn cmdsn_above(ctx: &Ctx) -> CaseOutcome {
    cmdsn_case(ctx, |r| r.max_cmd_sn.add(1000))
}

fn cmdsn_wrap(ctx: &Ctx) -> CaseOutcome {
    let mut r = match login_or_skip(ctx, &ctx.opts, Sn(u32::MAX - 20)) {
        Ok(r) => r,
        Err(o) => return o,
    };
    let start = r.cmd_sn;
    for i in 0..40 {
        match r.tur() {
            Obs::Status {
                status: ScsiStatus::GOOD,
                ..
            } => {}
            other => {
                return CaseOutcome::fail(format!("command {i} (CmdSN {}): {other}", start.add(i)));
            }
        }
    }
    CaseOutcome::pass(format!("CmdSN {start} → {}: 40 commands GOOD", r.cmd_sn))
}

/// Starts a 16-block write that the target must solicit with an R2T; returns the command
/// and the R2T.
fn write_with_r2t(ctx: &Ctx) -> Result<(Raw, rtgt_pdu::ScsiCommand, rtgt_pdu::R2t), CaseOutcome> {
    let mut opts = ctx.opts.clone();
    opts.initial_r2t = true;
    opts.immediate_data = false;
    let mut r = login_or_skip(ctx, &opts, Sn(1))?;
    if !r.outcome.session.initial_r2t || r.outcome.session.immediate_data {
        return Err(CaseOutcome::skip(
            "target would not negotiate InitialR2T=Yes, ImmediateData=No",
        ));
    }
    let len = 16 * 512;
    let cmd = r.command(&WRITE10_16_BLOCKS, false, true, len);
    r.send(cmd, Vec::new())
        .map_err(|e| CaseOutcome::fail(format!("send: {e}")))?;
    match r.observe_for(cmd.itt, ANSWER) {
        Obs::R2t(t) => Ok((r, cmd, t)),
        other => Err(CaseOutcome::fail(format!(
            "expected an R2T for the write: {other}"
        ))),
    }
}

fn dataout_case(ctx: &Ctx, tweak: fn(&mut DataOut, &mut Vec<u8>)) -> CaseOutcome {
    let (mut r, cmd, t) = match write_with_r2t(ctx) {
        Ok(x) => x,
        Err(o) => return o,
    };
    let len = t.desired_data_transfer_length.min(8192);
    let mut d = DataOut {
        final_pdu: true,
        lun: r.lun,
        itt: cmd.itt,
        ttt: t.ttt,
        exp_stat_sn: r.exp_stat_sn,
        data_sn: Sn(0),
        buffer_offset: t.buffer_offset,
    };
    let mut data = vec![0x77; len as usize];
    tweak(&mut d, &mut data);
    if let Err(e) = r.send(d, data) {
        return CaseOutcome::pass(format!("connection closed ({e})"));
    }
    let obs = r.observe_for(cmd.itt, ANSWER);
    if obs.is_check_condition() {
        return match r.still_serves() {
            Ok(()) => CaseOutcome::pass(format!("{obs}; session still serves")),
            Err(e) => CaseOutcome::fail(format!("{obs}; then {e}")),
        };
    }
    match &obs {
        Obs::Reject { .. } => {
            r.cmd_sn = r.exp_cmd_sn;
            match r.still_serves() {
                Ok(()) => CaseOutcome::pass(format!("{obs}; session still serves")),
                Err(e) => CaseOutcome::pass(format!("{obs}; then the connection ended ({e})")),
            }
        }
        Obs::Closed(_) => CaseOutcome::pass(obs.to_string()),
        other => CaseOutcome::fail(format!("{other} (the bad Data-Out was accepted)")),
    }
}

fn dataout_wrong_datasn(ctx: &Ctx) -> CaseOutcome {
    dataout_case(ctx, |d, _| d.data_sn = Sn(7))
}

fn dataout_wrong_offset(ctx: &Ctx) -> CaseOutcome {
    dataout_case(ctx, |d, _| {
        d.buffer_offset = d.buffer_offset.wrapping_add(1 << 20);
    })
}

fn dataout_wrong_ttt(ctx: &Ctx) -> CaseOutcome {
    dataout_case(ctx, |d, _| d.ttt = Ttt(d.ttt.0 ^ 0x5555_0000))
}

fn dataout_overrun(ctx: &Ctx) -> CaseOutcome {
    dataout_case(ctx, |_, data| data.extend_from_slice(&[0x66; 512]))
}

fn tmf_abort_unknown(ctx: &Ctx) -> CaseOutcome {
    let mut r = match plain(ctx) {
        Ok(r) => r,
        Err(o) => return o,
    };
    let itt = r.itt();
    let req = TaskMgmtRequest {
        immediate: true,
        function: TmfFunction::ABORT_TASK,
        lun: r.lun,
        itt,
        referenced_task_tag: Itt(0x7777_7777),
        cmd_sn: r.cmd_sn,
        exp_stat_sn: r.exp_stat_sn,
        ref_cmd_sn: r.cmd_sn.add(1000),
        exp_data_sn: Sn(0),
    };
    let obs = match r.send(req, Vec::new()) {
        Ok(()) => r.observe_for(itt, ANSWER),
        Err(e) => Obs::Closed(e.to_string()),
    };
    match obs {
        Obs::Tmf(TmfResponse::TASK_DOES_NOT_EXIST) => match r.still_serves() {
            Ok(()) => CaseOutcome::pass(format!("{obs}; session still serves")),
            Err(e) => CaseOutcome::fail(format!("{obs}; then {e}")),
        },
        other => CaseOutcome::fail(other.to_string()),
    }
}

fn logout_during_io(ctx: &Ctx) -> CaseOutcome {
    let mut r = match plain(ctx) {
        Ok(r) => r,
        Err(o) => return o,
    };
    let mut itts = Vec::new();
    for _ in 0..8 {
        let cmd = r.command(&[0x28, 0, 0, 0, 0, 0, 0, 0, 128, 0], true, false, 128 * 512);
        itts.push(cmd.itt);
        if let Err(e) = r.send(cmd, Vec::new()) {
            return CaseOutcome::fail(format!("send: {e}"));
        }
    }
    let itt = r.itt();
    let req = LogoutRequest {
        immediate: true,
        reason: LogoutReason::CLOSE_SESSION,
        itt,
        cid: 0,
        cmd_sn: r.cmd_sn,
        exp_stat_sn: r.exp_stat_sn,
    };
    if let Err(e) = r.send(req, Vec::new()) {
        return CaseOutcome::fail(format!("send logout: {e}"));
    }
    let mut statuses = 0;
    loop {
        match r.observe(Duration::from_secs(10)) {
            Obs::Status { .. } => statuses += 1,
            Obs::Logout(code) if code == rtgt_pdu::LogoutResponseCode::SUCCESS => {
                // Closing the connection after a successful logout is the initiator's job;
                // the target may close first.
                let closed = r.stream.closed_within(Duration::from_millis(300));
                r.stream.shutdown();
                return CaseOutcome::pass(format!(
                    "{statuses} of 8 reads answered, Logout Response success{}",
                    if closed {
                        ", target closed the connection"
                    } else {
                        ""
                    }
                ));
            }
            other => return CaseOutcome::fail(format!("after {statuses} reads: {other}")),
        }
    }
}

fn abrupt_close(ctx: &Ctx) -> CaseOutcome {
    // Half a header.
    {
        let mut r = match plain(ctx) {
            Ok(r) => r,
            Err(o) => return o,
        };
        let cmd = r.command(&READ10_1_BLOCK, true, false, 512);
        let bhs = cmd.encode(BhsLengths::ZERO);
        let _ = r.stream.send_raw(&bhs[..30]);
        r.stream.shutdown();
    }
    if !super::target_alive(ctx) {
        return CaseOutcome::fail("target stopped serving after half a header");
    }
    // Half of a write's immediate data.
    let mut r = match plain(ctx) {
        Ok(r) => r,
        Err(o) => return o,
    };
    let cmd = r.command(&WRITE10_16_BLOCKS, false, true, 8192);
    let immediate = r.outcome.session.immediate_data;
    let len = if immediate {
        8192u32
            .min(r.outcome.connection.max_xmit_data_segment_length)
            .min(r.outcome.session.first_burst_length)
    } else {
        0
    };
    let mut wire = cmd.encode(BhsLengths::data_bounded(len)).to_vec();
    if r.stream.digests().header {
        let (b, _) = wire
            .split_first_chunk::<BHS_LEN>()
            .map_or(([0; BHS_LEN], &[][..]), |(b, a)| (*b, a));
        wire.extend_from_slice(&header_digest(&b, &[]).to_le_bytes());
    }
    wire.extend_from_slice(&vec![0x42; len as usize / 2]);
    let _ = r.stream.send_raw(&wire);
    r.stream.shutdown();
    CaseOutcome::pass(format!(
        "closed mid-header and mid-data ({} bytes of {len} sent)",
        len / 2
    ))
}
