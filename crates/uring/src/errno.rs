//! Mapping of host errors (errno) to [`BackendError`], and so to SCSI sense.
//!
//! SBC-4 §4.18 (error reporting) and SPC-5 §4.4 (sense data): EIO becomes MEDIUM ERROR,
//! ENOSPC a space-allocation failure, EROFS/EPERM/EACCES on a write DATA PROTECT,
//! EOPNOTSUPP an unsupported operation (ILLEGAL REQUEST), anything else HARDWARE ERROR.

use rtgt_scsi::BackendError;

/// Turn a positive errno into the backend error the SCSI layer reports for it.
///
/// `what` names the operation for the error text (e.g. `"read"`).
///
/// ```
/// use rtgt_scsi::BackendError;
/// assert_eq!(rtgt_uring::errno_to_backend(libc::ENOSPC, "write"), BackendError::NoSpace);
/// assert!(matches!(rtgt_uring::errno_to_backend(libc::EIO, "read"), BackendError::Medium(_)));
/// ```
pub fn errno_to_backend(errno: i32, what: &str) -> BackendError {
    match errno {
        libc::EIO | libc::EILSEQ | libc::ENODATA | libc::EBADMSG | libc::EUCLEAN => {
            BackendError::Medium(format!("{what}: {}", describe(errno)))
        }
        libc::ENOSPC | libc::EDQUOT => BackendError::NoSpace,
        libc::EROFS | libc::EPERM | libc::EACCES | libc::ETXTBSY => BackendError::WriteProtected,
        libc::EOPNOTSUPP | libc::ENOTTY | libc::ENOSYS => BackendError::Unsupported,
        _ => BackendError::Other(format!("{what}: {}", describe(errno))),
    }
}

/// Turn an [`std::io::Error`] into a backend error (see [`errno_to_backend`]).
pub fn io_to_backend(err: &std::io::Error, what: &str) -> BackendError {
    match err.raw_os_error() {
        Some(errno) => errno_to_backend(errno, what),
        None => BackendError::Other(format!("{what}: {err}")),
    }
}

/// The last OS error of this thread as a backend error.
pub(crate) fn last_os_error(what: &str) -> BackendError {
    io_to_backend(&std::io::Error::last_os_error(), what)
}

fn describe(errno: i32) -> String {
    std::io::Error::from_raw_os_error(errno).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eio_is_medium_error() {
        match errno_to_backend(libc::EIO, "read") {
            BackendError::Medium(text) => assert!(text.starts_with("read: "), "{text}"),
            other => panic!("EIO mapped to {other:?}"),
        }
    }

    #[test]
    fn space_and_protection() {
        assert_eq!(errno_to_backend(libc::ENOSPC, "w"), BackendError::NoSpace);
        assert_eq!(errno_to_backend(libc::EDQUOT, "w"), BackendError::NoSpace);
        assert_eq!(
            errno_to_backend(libc::EROFS, "w"),
            BackendError::WriteProtected
        );
        assert_eq!(
            errno_to_backend(libc::EPERM, "w"),
            BackendError::WriteProtected
        );
    }

    #[test]
    fn unsupported_and_other() {
        assert_eq!(
            errno_to_backend(libc::EOPNOTSUPP, "punch"),
            BackendError::Unsupported
        );
        assert_eq!(
            errno_to_backend(libc::ENOSYS, "punch"),
            BackendError::Unsupported
        );
        assert!(matches!(
            errno_to_backend(libc::ENOMEM, "x"),
            BackendError::Other(_)
        ));
        let err = std::io::Error::other("plain");
        assert!(matches!(io_to_backend(&err, "x"), BackendError::Other(_)));
    }
}
