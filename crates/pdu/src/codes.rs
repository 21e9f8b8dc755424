//! Wire code points as newtypes with named constants (RFC 7143 §11).
//!
//! Every one-byte (or two-byte) code the PDU headers carry is a transparent
//! newtype over its integer, with a named associated constant per value the
//! standard assigns. Unknown values survive decoding untouched, report
//! `is_known() == false`, and print as hex, so a peer's bad value can be
//! logged and answered precisely (RFC 7143 §11: "receipt of reserved code
//! values in defined fields MUST be reported as a protocol error" — that
//! report is the consumer's decision, the codec only preserves the value).
//!
//! Clauses: opcodes §11.2.1.2, reject reasons §11.17.1, TMF functions §11.5.1
//! (and RFC 7144 §4.1 for 9–12), TMF responses §11.6.1, login status §11.13.5,
//! logout reasons §11.14.1, logout responses §11.15.1, asynchronous events
//! §11.9.1, SCSI status §11.4.2 (SAM-5), iSCSI response §11.4.3, task
//! attributes §11.3.1.3, SNACK types §11.16.1, login stages §11.12.3, AHS types
//! §11.2.2.

/// Defines a newtype over an integer with documented named constants, a
/// `name()` lookup, hex-printing `Debug`/`Display` for unknown values, and
/// conversions to and from the integer.
macro_rules! wire_code {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident($int:ty) {
            $( $(#[$cmeta:meta])* $cname:ident = $cval:expr, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        $vis struct $name(pub $int);

        impl $name {
            $( $(#[$cmeta])* pub const $cname: Self = Self($cval); )*

            /// The raw wire value.
            #[inline]
            pub const fn get(self) -> $int {
                self.0
            }

            /// The standard's name for this value, if it assigns one.
            pub const fn name(self) -> Option<&'static str> {
                match self.0 {
                    $( v if v == $cval => Some(stringify!($cname)), )*
                    _ => None,
                }
            }

            /// Whether the standard assigns this value.
            #[inline]
            pub const fn is_known(self) -> bool {
                self.name().is_some()
            }
        }

        impl ::core::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                match self.name() {
                    Some(n) => f.write_str(n),
                    None => write!(
                        f,
                        "{}({:#0w$x})",
                        stringify!($name),
                        self.0,
                        w = 2 + 2 * ::core::mem::size_of::<$int>()
                    ),
                }
            }
        }

        impl ::core::fmt::Display for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                match self.name() {
                    Some(n) => f.write_str(n),
                    None => write!(f, "{:#0w$x}", self.0, w = 2 + 2 * ::core::mem::size_of::<$int>()),
                }
            }
        }

        impl From<$int> for $name {
            #[inline]
            fn from(v: $int) -> Self {
                Self(v)
            }
        }

        impl From<$name> for $int {
            #[inline]
            fn from(v: $name) -> Self {
                v.0
            }
        }
    };
}

wire_code! {
    /// PDU opcode: the low six bits of BHS byte 0 (RFC 7143 §11.2.1.2).
    pub struct Opcode(u8) {
        /// NOP-Out (initiator).
        NOP_OUT = 0x00,
        /// SCSI Command (initiator).
        SCSI_COMMAND = 0x01,
        /// SCSI Task Management Function Request (initiator).
        TASK_MGMT_REQUEST = 0x02,
        /// Login Request (initiator).
        LOGIN_REQUEST = 0x03,
        /// Text Request (initiator).
        TEXT_REQUEST = 0x04,
        /// SCSI Data-Out (initiator).
        SCSI_DATA_OUT = 0x05,
        /// Logout Request (initiator).
        LOGOUT_REQUEST = 0x06,
        /// SNACK Request (initiator).
        SNACK_REQUEST = 0x10,
        /// Vendor-specific initiator opcode 0x1c.
        VENDOR_1C = 0x1c,
        /// Vendor-specific initiator opcode 0x1d.
        VENDOR_1D = 0x1d,
        /// Vendor-specific initiator opcode 0x1e.
        VENDOR_1E = 0x1e,
        /// NOP-In (target).
        NOP_IN = 0x20,
        /// SCSI Response (target).
        SCSI_RESPONSE = 0x21,
        /// SCSI Task Management Function Response (target).
        TASK_MGMT_RESPONSE = 0x22,
        /// Login Response (target).
        LOGIN_RESPONSE = 0x23,
        /// Text Response (target).
        TEXT_RESPONSE = 0x24,
        /// SCSI Data-In (target).
        SCSI_DATA_IN = 0x25,
        /// Logout Response (target).
        LOGOUT_RESPONSE = 0x26,
        /// Ready To Transfer (target).
        R2T = 0x31,
        /// Asynchronous Message (target).
        ASYNC_MESSAGE = 0x32,
        /// Vendor-specific target opcode 0x3c.
        VENDOR_3C = 0x3c,
        /// Vendor-specific target opcode 0x3d.
        VENDOR_3D = 0x3d,
        /// Vendor-specific target opcode 0x3e.
        VENDOR_3E = 0x3e,
        /// Reject (target).
        REJECT = 0x3f,
    }
}

impl Opcode {
    /// Whether this opcode is sent by initiators (bit 5 clear, RFC 7143 §11.2.1.2).
    #[inline]
    pub const fn is_initiator(self) -> bool {
        self.0 & 0x20 == 0
    }

    /// Whether this opcode is sent by targets.
    #[inline]
    pub const fn is_target(self) -> bool {
        !self.is_initiator()
    }
}

wire_code! {
    /// Reason code of a Reject PDU (RFC 7143 §11.17.1).
    pub struct RejectReason(u8) {
        /// 0x01: reserved, not to be sent.
        RESERVED = 0x01,
        /// Data (payload) digest error; the PDU is discarded (§7.8).
        DATA_DIGEST_ERROR = 0x02,
        /// SNACK Reject: the requested data or status cannot be resent.
        SNACK_REJECT = 0x03,
        /// Protocol error.
        PROTOCOL_ERROR = 0x04,
        /// Command (or opcode) not supported.
        COMMAND_NOT_SUPPORTED = 0x05,
        /// Immediate command rejected: too many immediate commands.
        IMMEDIATE_COMMAND_REJECT = 0x06,
        /// Task in progress.
        TASK_IN_PROGRESS = 0x07,
        /// Invalid data ACK.
        INVALID_DATA_ACK = 0x08,
        /// Invalid PDU field.
        INVALID_PDU_FIELD = 0x09,
        /// Long operation reject: out of resources for a Target Transfer Tag.
        LONG_OP_REJECT = 0x0a,
        /// Deprecated (was "Negotiation Reset" in RFC 3720); must not be sent.
        DEPRECATED = 0x0b,
        /// Waiting for Logout.
        WAITING_FOR_LOGOUT = 0x0c,
    }
}

wire_code! {
    /// Task Management function code, 7 bits (RFC 7143 §11.5.1, RFC 7144 §4.1).
    pub struct TmfFunction(u8) {
        /// Abort the task named by Referenced Task Tag.
        ABORT_TASK = 1,
        /// Abort all tasks of this session on the LU.
        ABORT_TASK_SET = 2,
        /// Clear the ACA condition.
        CLEAR_ACA = 3,
        /// Abort all tasks in the task set.
        CLEAR_TASK_SET = 4,
        /// Logical unit reset.
        LOGICAL_UNIT_RESET = 5,
        /// Target warm reset.
        TARGET_WARM_RESET = 6,
        /// Target cold reset.
        TARGET_COLD_RESET = 7,
        /// Reassign connection allegiance of a task (ERL 2).
        TASK_REASSIGN = 8,
        /// Query whether a task exists (RFC 7144).
        QUERY_TASK = 9,
        /// Query whether any task of the set exists (RFC 7144).
        QUERY_TASK_SET = 10,
        /// I_T nexus reset (RFC 7144).
        I_T_NEXUS_RESET = 11,
        /// Query asynchronous event (RFC 7144).
        QUERY_ASYNC_EVENT = 12,
    }
}

wire_code! {
    /// Task Management Function Response code (RFC 7143 §11.6.1, RFC 7144 §4.2).
    pub struct TmfResponse(u8) {
        /// Function complete.
        FUNCTION_COMPLETE = 0,
        /// Task does not exist.
        TASK_DOES_NOT_EXIST = 1,
        /// LUN does not exist.
        LUN_DOES_NOT_EXIST = 2,
        /// Task still allegiant.
        TASK_STILL_ALLEGIANT = 3,
        /// Task allegiance reassignment not supported.
        TASK_REASSIGNMENT_NOT_SUPPORTED = 4,
        /// Task management function not supported.
        FUNCTION_NOT_SUPPORTED = 5,
        /// Function authorization failed.
        FUNCTION_AUTHORIZATION_FAILED = 6,
        /// Function succeeded (query functions, RFC 7144).
        FUNCTION_SUCCEEDED = 7,
        /// Function rejected.
        FUNCTION_REJECTED = 255,
    }
}

wire_code! {
    /// Login Response status class, the high byte of the status (RFC 7143 §11.13.5).
    pub struct LoginStatusClass(u8) {
        /// 0: success.
        SUCCESS = 0,
        /// 1: redirection; the target moved (TargetAddress in the data segment).
        REDIRECTION = 1,
        /// 2: initiator error; do not retry without changes.
        INITIATOR_ERROR = 2,
        /// 3: target error; the request may be retried later.
        TARGET_ERROR = 3,
    }
}

wire_code! {
    /// Login Response status: Status-Class in the high byte, Status-Detail in
    /// the low byte (RFC 7143 §11.13.5).
    pub struct LoginStatus(u16) {
        /// 0x0000: login is proceeding OK.
        SUCCESS = 0x0000,
        /// 0x0101: target moved temporarily.
        TARGET_MOVED_TEMPORARILY = 0x0101,
        /// 0x0102: target moved permanently.
        TARGET_MOVED_PERMANENTLY = 0x0102,
        /// 0x0200: miscellaneous initiator error.
        INITIATOR_ERROR = 0x0200,
        /// 0x0201: authentication failure.
        AUTHENTICATION_FAILURE = 0x0201,
        /// 0x0202: authorization failure.
        AUTHORIZATION_FAILURE = 0x0202,
        /// 0x0203: target not found.
        NOT_FOUND = 0x0203,
        /// 0x0204: target removed.
        TARGET_REMOVED = 0x0204,
        /// 0x0205: unsupported version.
        UNSUPPORTED_VERSION = 0x0205,
        /// 0x0206: too many connections.
        TOO_MANY_CONNECTIONS = 0x0206,
        /// 0x0207: missing parameter.
        MISSING_PARAMETER = 0x0207,
        /// 0x0208: can't include this connection in the session.
        CANT_INCLUDE_IN_SESSION = 0x0208,
        /// 0x0209: session type not supported.
        SESSION_TYPE_NOT_SUPPORTED = 0x0209,
        /// 0x020a: session does not exist.
        SESSION_DOES_NOT_EXIST = 0x020a,
        /// 0x020b: invalid request during login.
        INVALID_DURING_LOGIN = 0x020b,
        /// 0x0300: target hardware or software error.
        TARGET_ERROR = 0x0300,
        /// 0x0301: service unavailable.
        SERVICE_UNAVAILABLE = 0x0301,
        /// 0x0302: out of resources.
        OUT_OF_RESOURCES = 0x0302,
    }
}

impl LoginStatus {
    /// Builds a status from its class and detail bytes.
    #[inline]
    pub const fn from_parts(class: LoginStatusClass, detail: u8) -> Self {
        Self(((class.0 as u16) << 8) | detail as u16)
    }

    /// The Status-Class byte.
    #[inline]
    pub const fn class(self) -> LoginStatusClass {
        LoginStatusClass((self.0 >> 8) as u8)
    }

    /// The Status-Detail byte.
    #[inline]
    pub const fn detail(self) -> u8 {
        self.0 as u8
    }
}

wire_code! {
    /// Logout Request reason code, 7 bits (RFC 7143 §11.14.1).
    pub struct LogoutReason(u8) {
        /// Close the session (all connections).
        CLOSE_SESSION = 0,
        /// Close the connection named by CID.
        CLOSE_CONNECTION = 1,
        /// Remove the connection for recovery (ERL 2).
        REMOVE_CONNECTION_FOR_RECOVERY = 2,
    }
}

wire_code! {
    /// Logout Response code (RFC 7143 §11.15.1).
    pub struct LogoutResponseCode(u8) {
        /// Connection or session closed successfully.
        SUCCESS = 0,
        /// CID not found.
        CID_NOT_FOUND = 1,
        /// Connection recovery is not supported.
        RECOVERY_NOT_SUPPORTED = 2,
        /// Cleanup failed for various reasons.
        CLEANUP_FAILED = 3,
    }
}

wire_code! {
    /// Asynchronous Message event code (RFC 7143 §11.9.1).
    pub struct AsyncEvent(u8) {
        /// A SCSI asynchronous event; sense data in the data segment.
        SCSI_EVENT = 0,
        /// The target requests a logout (within Parameter3 seconds).
        LOGOUT_REQUESTED = 1,
        /// The target will drop the connection named by Parameter1.
        CONNECTION_DROP = 2,
        /// The target will drop all connections of the session.
        SESSION_DROP = 3,
        /// The target requests parameter renegotiation.
        NEGOTIATION_REQUESTED = 4,
        /// Task termination: all active tasks of the LU named by LUN are being
        /// terminated (FastAbort task reporting).
        TASK_TERMINATION = 5,
        /// Vendor-specific event (AsyncVCode carries the detail).
        VENDOR_SPECIFIC = 255,
    }
}

wire_code! {
    /// SCSI status byte (SAM-5 §5.3.1; RFC 7143 §11.4.2).
    pub struct ScsiStatus(u8) {
        /// GOOD.
        GOOD = 0x00,
        /// CHECK CONDITION: sense data follows.
        CHECK_CONDITION = 0x02,
        /// CONDITION MET.
        CONDITION_MET = 0x04,
        /// BUSY.
        BUSY = 0x08,
        /// RESERVATION CONFLICT.
        RESERVATION_CONFLICT = 0x18,
        /// TASK SET FULL.
        TASK_SET_FULL = 0x28,
        /// ACA ACTIVE.
        ACA_ACTIVE = 0x30,
        /// TASK ABORTED.
        TASK_ABORTED = 0x40,
    }
}

wire_code! {
    /// iSCSI service response of a SCSI Response PDU (RFC 7143 §11.4.3).
    pub struct ResponseCode(u8) {
        /// The command completed at the target (the SCSI status is valid).
        COMMAND_COMPLETED = 0x00,
        /// Target failure.
        TARGET_FAILURE = 0x01,
    }
}

wire_code! {
    /// SCSI Command task attribute, 3 bits (RFC 7143 §11.3.1.3; SAM-5).
    pub struct TaskAttribute(u8) {
        /// Untagged.
        UNTAGGED = 0,
        /// Simple.
        SIMPLE = 1,
        /// Ordered.
        ORDERED = 2,
        /// Head of queue.
        HEAD_OF_QUEUE = 3,
        /// ACA.
        ACA = 4,
    }
}

wire_code! {
    /// SNACK type, 4 bits (RFC 7143 §11.16.1).
    pub struct SnackType(u8) {
        /// Data/R2T SNACK.
        DATA_R2T = 0,
        /// Status SNACK.
        STATUS = 1,
        /// DataACK.
        DATA_ACK = 2,
        /// R-Data SNACK.
        R_DATA = 3,
    }
}

wire_code! {
    /// Login stage, the 2-bit CSG/NSG fields (RFC 7143 §11.12.3).
    pub struct LoginStage(u8) {
        /// 0: security negotiation.
        SECURITY_NEGOTIATION = 0,
        /// 1: login operational negotiation.
        OPERATIONAL_NEGOTIATION = 1,
        /// 3: full feature phase.
        FULL_FEATURE_PHASE = 3,
    }
}

wire_code! {
    /// Additional Header Segment type (RFC 7143 §11.2.2.1).
    pub struct AhsType(u8) {
        /// Extended CDB: bytes 16.. of a CDB longer than 16 bytes.
        EXTENDED_CDB = 1,
        /// Bidirectional expected read-data length.
        BIDI_READ_LENGTH = 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_print_their_name() {
        assert_eq!(format!("{:?}", Opcode::SCSI_COMMAND), "SCSI_COMMAND");
        assert_eq!(Opcode::R2T.to_string(), "R2T");
        assert_eq!(RejectReason::WAITING_FOR_LOGOUT.get(), 0x0c);
    }

    #[test]
    fn unknown_values_survive_and_print_as_hex() {
        let op = Opcode::from(0x2b);
        assert!(!op.is_known());
        assert_eq!(format!("{op:?}"), "Opcode(0x2b)");
        assert_eq!(op.to_string(), "0x2b");
        assert_eq!(u8::from(op), 0x2b);
        let status = LoginStatus(0x02ff);
        assert_eq!(format!("{status:?}"), "LoginStatus(0x02ff)");
    }

    #[test]
    fn login_status_splits_into_class_and_detail() {
        let s = LoginStatus::AUTHENTICATION_FAILURE;
        assert_eq!(s.class(), LoginStatusClass::INITIATOR_ERROR);
        assert_eq!(s.detail(), 0x01);
        assert_eq!(
            LoginStatus::from_parts(LoginStatusClass::TARGET_ERROR, 2),
            LoginStatus::OUT_OF_RESOURCES
        );
    }

    #[test]
    fn opcode_direction_follows_bit_5() {
        assert!(Opcode::SNACK_REQUEST.is_initiator());
        assert!(Opcode::REJECT.is_target());
        assert!(Opcode::NOP_IN.is_target());
    }
}
