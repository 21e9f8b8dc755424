//! Properties of the logical unit under arbitrary input, shared by the `cdb` fuzz target
//! (`fuzz/fuzz_targets/cdb.rs`) and the regression test `tests/fuzz_regressions.rs`.
//!
//! Input format, repeated until the input is exhausted (short tails are zero-padded):
//! `flags:u8 | edtl:u32 BE | cdb_len:u8 | cdb | data_len:u16 BE | data`.
//! `flags` bits 0-1 select the data direction, bit 2 the nexus, bit 3 a stepwise (engine-style)
//! execution instead of `execute_sync`, bits 4-6 an occasional task management event.

#![allow(dead_code)]

use rtgt_scsi::{
    BlockBackend, CommandRequest, DataDirection, DataIn, Dispatch, IoOutcome, LogicalUnit,
    LuConfig, MemoryBackend, Nexus, NexusId, ResetKind, Response, SenseData, SenseKey, Status,
    Step, TaskAttribute, run_plan,
};

struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        head
    }

    fn u8(&mut self) -> u8 {
        self.take(1).first().copied().unwrap_or(0)
    }

    fn u16(&mut self) -> u16 {
        let b = self.take(2);
        u16::from_be_bytes([
            b.first().copied().unwrap_or(0),
            b.get(1).copied().unwrap_or(0),
        ])
    }

    fn u32(&mut self) -> u32 {
        (u32::from(self.u16()) << 16) | u32::from(self.u16())
    }
}

fn check_response(r: &Response, req: &CommandRequest<'_>) {
    match r.status {
        Status::GOOD => assert!(r.sense.is_none(), "GOOD with sense: {r:?}"),
        Status::CHECK_CONDITION => {
            let sense = r.sense.expect("CHECK CONDITION without sense data");
            let (key, _) = SenseData::parse(sense.as_bytes()).expect("unparseable sense data");
            assert_ne!(key, SenseKey::NO_SENSE, "CHECK CONDITION with NO SENSE");
            assert!(r.data_in.is_empty(), "data with CHECK CONDITION");
        }
        Status::RESERVATION_CONFLICT => {
            assert!(r.sense.is_none());
            assert!(r.data_in.is_empty());
        }
        s => panic!("unexpected status {s:?}"),
    }
    let expected_in = match req.direction {
        DataDirection::Read | DataDirection::Bidirectional => req.expected_len as usize,
        _ => 0,
    };
    assert!(
        r.data_in.len() <= expected_in,
        "more Data-In than expected: {} > {expected_in}",
        r.data_in.len()
    );
}

fn stepwise(
    lu: &LogicalUnit,
    store: &dyn BlockBackend,
    n: &Nexus,
    req: &CommandRequest<'_>,
    out: &[u8],
) -> Response {
    let mut cmd = match lu.prepare(n, req) {
        Dispatch::Complete(c) => {
            assert!(
                !matches!(c.data_in, DataIn::Buffer { .. }),
                "immediate completion refers to an engine buffer"
            );
            return Response::from_completion(c, &[]);
        }
        Dispatch::Execute(cmd) => cmd,
    };
    assert!(
        cmd.data_out_len() <= req.expected_len as usize,
        "asks for more Data-Out than announced"
    );
    let out = out.get(..cmd.data_out_len()).unwrap_or(out);
    match lu.execute(n, &mut cmd, out) {
        Step::Blocked => panic!("blocked with no other command in flight"),
        Step::Complete => Response::from_completion(lu.complete(n, cmd, &[]), &[]),
        Step::Io(plan) => {
            let mut data_in = vec![0u8; cmd.data_in_capacity()];
            let outcomes: Vec<IoOutcome> = run_plan(store, &plan, out, &mut data_in);
            let c = lu.complete(n, cmd, &outcomes);
            if let DataIn::Buffer { len } = c.data_in {
                assert!(len <= data_in.len(), "Data-In beyond the buffer");
            }
            Response::from_completion(c, &data_in)
        }
    }
}

/// Runs a sequence of arbitrary commands against a fresh logical unit and checks every
/// response is well formed, then that no command was left inside the COMPARE AND WRITE gate.
pub fn cdb(input: &[u8]) {
    let store = MemoryBackend::new(512, 2048).expect("store");
    let mut cfg = LuConfig::new("iqn.2024-01.org.example:fuzz", 0);
    cfg.max_transfer_bytes = 64 * 1024;
    cfg.max_write_same_bytes = 1 << 20;
    let lu = LogicalUnit::new(cfg, store.capabilities());
    let nexuses = [
        Nexus::new(
            NexusId(1),
            "iqn.2024-01.org.example:a",
            [0x40, 0, 0, 0, 0, 1],
            1,
        ),
        Nexus::new(
            NexusId(2),
            "iqn.2024-01.org.example:b",
            [0x40, 0, 0, 0, 0, 2],
            1,
        ),
    ];
    let mut r = Reader { data: input };
    let mut commands = 0;
    while !r.data.is_empty() && commands < 64 {
        commands += 1;
        let flags = r.u8();
        // Keep transfers small so that one input stays fast.
        let edtl = r.u32() % (256 * 1024);
        let cdb_len = usize::from(r.u8() % 33);
        let cdb = r.take(cdb_len).to_vec();
        let data_len = usize::from(r.u16());
        let mut data = r.take(data_len).to_vec();
        data.resize(data_len.max(edtl as usize).min(256 * 1024), 0);
        let direction = match flags & 3 {
            0 => DataDirection::None,
            1 => DataDirection::Read,
            2 => DataDirection::Write,
            _ => DataDirection::Bidirectional,
        };
        let n = &nexuses[usize::from(flags >> 2 & 1)];
        let attribute = if flags == 0xFF {
            TaskAttribute::Aca
        } else {
            TaskAttribute::Simple
        };
        let req = CommandRequest {
            cdb: &cdb,
            attribute,
            expected_len: edtl,
            direction,
        };
        let resp = if flags & 0x08 != 0 {
            stepwise(&lu, &store, n, &req, &data)
        } else {
            lu.execute_sync(&store, n, &req, &data)
        };
        check_response(&resp, &req);
        match flags >> 4 & 7 {
            1 => lu.reset(ResetKind::LogicalUnit),
            2 => lu.nexus_lost(n.id),
            3 => lu.nexus_established(n),
            4 => lu.commands_cleared(n.id, &[NexusId(1), NexusId(2)]),
            _ => {}
        }
    }
    // A COMPARE AND WRITE must find the gate empty.
    let caw = [0x89, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0];
    let n = Nexus::new(
        NexusId(3),
        "iqn.2024-01.org.example:c",
        [0x40, 0, 0, 0, 0, 3],
        1,
    );
    lu.reset(ResetKind::TargetWarm);
    lu.nexus_lost(NexusId(1));
    lu.nexus_lost(NexusId(2));
    let req = CommandRequest::new(&caw, 1024, DataDirection::Write);
    if let Dispatch::Execute(mut cmd) = lu.prepare(&n, &req) {
        match lu.execute(&n, &mut cmd, &[0; 1024]) {
            Step::Blocked => panic!("a command was left in the gate"),
            _ => {
                lu.abort(cmd);
            }
        }
    }
}

/// Encodes one command in the input format of [`cdb`].
pub fn encode(flags: u8, edtl: u32, cdb: &[u8], data: &[u8]) -> Vec<u8> {
    let mut v = vec![flags];
    v.extend_from_slice(&edtl.to_be_bytes());
    v.push(cdb.len() as u8);
    v.extend_from_slice(cdb);
    v.extend_from_slice(&(data.len() as u16).to_be_bytes());
    v.extend_from_slice(data);
    v
}
