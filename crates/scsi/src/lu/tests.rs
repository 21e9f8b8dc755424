//! Unit tests of the logical unit's internal bookkeeping.

use super::*;
use crate::memory::MemoryBackend;
use crate::types::{CommandRequest, DataDirection};

fn setup() -> (LogicalUnit, MemoryBackend, Nexus) {
    let store = MemoryBackend::new(512, 1024).unwrap();
    let lu = LogicalUnit::new(LuConfig::new("iqn.t", 0), store.capabilities());
    let nexus = Nexus::new(NexusId(1), "iqn.i", [0; 6], 1);
    (lu, store, nexus)
}

#[test]
fn gate_is_idle_after_completion_and_abort() {
    let (lu, store, nexus) = setup();
    let cdb = [0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0];
    let r = lu.execute_sync(
        &store,
        &nexus,
        &CommandRequest::new(&cdb, 512, DataDirection::Write),
        &[1; 512],
    );
    assert_eq!(r.status, Status::GOOD);
    assert!(lu.gate.is_idle());
    let Dispatch::Execute(mut cmd) = lu.prepare(
        &nexus,
        &CommandRequest::new(&cdb, 512, DataDirection::Write),
    ) else {
        panic!("expected execution")
    };
    assert!(matches!(
        lu.execute(&nexus, &mut cmd, &[0; 512]),
        Step::Io(_)
    ));
    assert!(!lu.gate.is_idle());
    assert_eq!(lu.abort(cmd).status, Status::TASK_ABORTED);
    assert!(lu.gate.is_idle());
}

#[test]
fn fast_path_does_not_register_nexus() {
    let (lu, store, nexus) = setup();
    let cdb = [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0];
    lu.execute_sync(
        &store,
        &nexus,
        &CommandRequest::new(&cdb, 512, DataDirection::Read),
        &[],
    );
    assert!(lu.state().nexuses.is_empty());
    lu.execute_sync(
        &store,
        &nexus,
        &CommandRequest::new(&[0; 6], 0, DataDirection::None),
        &[],
    );
    assert_eq!(lu.state().nexuses.len(), 1);
}

#[test]
fn engine_skipping_ops_is_an_internal_failure() {
    let (lu, _store, nexus) = setup();
    let cdb = [0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0];
    let Dispatch::Execute(mut cmd) = lu.prepare(
        &nexus,
        &CommandRequest::new(&cdb, 512, DataDirection::Write),
    ) else {
        panic!("expected execution")
    };
    assert!(matches!(
        lu.execute(&nexus, &mut cmd, &[0; 512]),
        Step::Io(_)
    ));
    let c = lu.complete(&nexus, cmd, &[]);
    assert_eq!(c.status, Status::CHECK_CONDITION);
    assert_eq!(
        SenseData::parse(c.sense.unwrap().as_bytes()).map(|s| s.1),
        Some(crate::sense::AdditionalSense::INTERNAL_TARGET_FAILURE)
    );
}

#[test]
fn nexus_id_reuse_starts_fresh() {
    let (lu, _store, nexus) = setup();
    lu.nexus_established(&nexus);
    lu.reset(ResetKind::LogicalUnit);
    assert_eq!(
        lu.pending_unit_attentions(nexus.id),
        vec![UnitAttention::BusDeviceReset]
    );
    let other = Nexus::new(nexus.id, "iqn.other", [0; 6], 1);
    lu.nexus_established(&other);
    assert!(lu.pending_unit_attentions(nexus.id).is_empty());
    assert_eq!(lu.ua_nexuses.load(Ordering::SeqCst), 0);
}

#[test]
fn shared_types_are_thread_safe() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<LogicalUnit>();
    send::<Command>();
    send::<Step>();
    send_sync::<crate::MemoryBackend>();
}
