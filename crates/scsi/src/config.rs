//! Configuration of a logical unit: identity, inquiry strings, limits reported in the Block
//! Limits VPD page (SBC-4 §6.6.4) and the third-party copy operating parameters
//! (SPC-5 §6.18.4), and the task management functions the engine implements (SPC-5 §6.39).

use crate::identity::LuIdentity;

/// Task management functions the engine supports, reported by REPORT SUPPORTED TASK
/// MANAGEMENT FUNCTIONS (SPC-5 §6.39).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TmfSupport {
    /// ABORT TASK.
    pub abort_task: bool,
    /// ABORT TASK SET.
    pub abort_task_set: bool,
    /// CLEAR ACA.
    pub clear_aca: bool,
    /// CLEAR TASK SET.
    pub clear_task_set: bool,
    /// LOGICAL UNIT RESET.
    pub lu_reset: bool,
    /// QUERY TASK.
    pub query_task: bool,
    /// TARGET RESET (warm or cold).
    pub target_reset: bool,
    /// QUERY ASYNCHRONOUS EVENT.
    pub query_async_event: bool,
    /// QUERY TASK SET.
    pub query_task_set: bool,
    /// I_T NEXUS RESET.
    pub it_nexus_reset: bool,
}

impl TmfSupport {
    /// What an iSCSI target offers (RFC 7143 §11.5.1): ABORT TASK, ABORT TASK SET, CLEAR TASK
    /// SET, LOGICAL UNIT RESET and TARGET WARM/COLD RESET. iSCSI has no QUERY TASK, QUERY TASK
    /// SET, QUERY ASYNCHRONOUS EVENT or I_T NEXUS RESET function, and CLEAR ACA is meaningless
    /// without ACA support (NormACA is zero).
    pub const ISCSI: Self = Self {
        abort_task: true,
        abort_task_set: true,
        clear_aca: false,
        clear_task_set: true,
        lu_reset: true,
        query_task: false,
        target_reset: true,
        query_async_event: false,
        query_task_set: false,
        it_nexus_reset: false,
    };
}

impl Default for TmfSupport {
    fn default() -> Self {
        Self::ISCSI
    }
}

/// EXTENDED COPY limits (SPC-5 §6.18.4 operating parameters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyLimits {
    /// Maximum number of CSCD (target) descriptors in one parameter list.
    pub max_target_descriptors: u16,
    /// Maximum number of segment descriptors in one parameter list.
    pub max_segment_descriptors: u16,
    /// Maximum combined length of the descriptor lists, in bytes.
    pub max_descriptor_list_length: u32,
}

impl Default for CopyLimits {
    fn default() -> Self {
        Self {
            max_target_descriptors: 4,
            max_segment_descriptors: 8,
            max_descriptor_list_length: 1024,
        }
    }
}

/// Configuration of one logical unit.
///
/// ```
/// use rtgt_scsi::LuConfig;
///
/// let cfg = LuConfig::new("iqn.2024-01.org.example:target", 0);
/// assert_eq!(cfg.vendor, "RTGT");
/// assert_eq!(cfg.target_ports, vec![1]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LuConfig {
    /// The logical unit number (for REPORT LUNS addressed to this unit).
    pub lun: u64,
    /// The target's SCSI name (iSCSI target name), used in the SCSI name string designators.
    pub target_name: String,
    /// Serial number and NAA designator.
    pub identity: LuIdentity,
    /// T10 vendor identification (at most 8 ASCII characters).
    pub vendor: String,
    /// Product identification (at most 16 ASCII characters).
    pub product: String,
    /// Product revision level (at most 4 ASCII characters).
    pub revision: String,
    /// The logical unit is write protected regardless of the backend.
    pub read_only: bool,
    /// Relative target port identifiers of the target (REGISTER AND MOVE destinations).
    pub target_ports: Vec<u16>,
    /// Largest transfer of one command, in bytes (Block Limits MAXIMUM TRANSFER LENGTH, further
    /// limited by the backend).
    pub max_transfer_bytes: u32,
    /// Largest WRITE SAME, in bytes.
    pub max_write_same_bytes: u64,
    /// MAXIMUM UNMAP LBA COUNT (`u32::MAX`: no limit).
    pub max_unmap_blocks: u32,
    /// MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT.
    pub max_unmap_descriptors: u32,
    /// MAXIMUM COMPARE AND WRITE LENGTH in blocks (at most 255).
    pub max_compare_and_write_blocks: u8,
    /// MAXIMUM ATOMIC TRANSFER LENGTH in blocks (WRITE ATOMIC(16)); zero disables the command.
    pub max_atomic_blocks: u32,
    /// Task management functions reported by REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS.
    pub tmf: TmfSupport,
    /// EXTENDED COPY limits.
    pub copy: CopyLimits,
}

impl LuConfig {
    /// Defaults for LUN `lun` of the target named `target_name`; the identity is derived from
    /// both.
    pub fn new(target_name: &str, lun: u64) -> Self {
        let version = env!("CARGO_PKG_VERSION");
        let revision: String = version.split('.').take(2).collect::<Vec<_>>().join(".");
        Self {
            lun,
            target_name: target_name.to_owned(),
            identity: LuIdentity::new(target_name, lun),
            vendor: "RTGT".into(),
            product: "rtgt disk".into(),
            revision,
            read_only: false,
            target_ports: vec![1],
            max_transfer_bytes: 32 << 20,
            max_write_same_bytes: 1 << 30,
            max_unmap_blocks: u32::MAX,
            max_unmap_descriptors: 2048,
            max_compare_and_write_blocks: 255,
            max_atomic_blocks: 256,
            tmf: TmfSupport::ISCSI,
            copy: CopyLimits::default(),
        }
    }
}
