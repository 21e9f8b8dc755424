//! The engine's way: a caller-owned ring, the backing file registered in its file table,
//! SQEs from the builders with the caller's user_data, completions decoded by the crate.

use io_uring::IoUring;
use rtgt_scsi::BackendError;
use rtgt_uring::completion::{Direction, Next, Transfer};
use rtgt_uring::{AlignedBuf, BackingFile, BackingOptions, FileRef, decode_result, sqe};

fn ring() -> Option<IoUring> {
    match IoUring::new(16) {
        Ok(ring) => Some(ring),
        Err(e) => {
            println!("skipping: io_uring unavailable here ({e})");
            None
        }
    }
}

/// Push one entry, wait for its completion, return (user_data, res).
fn run(ring: &mut IoUring, entry: &io_uring::squeue::Entry) -> (u64, i32) {
    // SAFETY: every buffer the entries point to lives in the calling test until this function
    // has reaped the completion.
    unsafe { ring.submission().push(entry).expect("sq has room") };
    ring.submit_and_wait(1).expect("enter");
    let cqe = ring.completion().next().expect("a completion");
    (cqe.user_data(), cqe.result())
}

#[test]
fn builders_on_a_callers_ring_with_fixed_file_and_buffers() {
    let Some(mut ring) = ring() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = BackingOptions {
        create: true,
        size: Some(1 << 20),
        ..Default::default()
    };
    let backing = BackingFile::open(dir.path().join("engine.img"), &opts).expect("open");
    // The engine owns a sparse file table with room for many LUs; this one takes slot 3.
    ring.submitter()
        .register_files_sparse(8)
        .expect("sparse table");
    let file = backing.register(&ring.submitter(), 3).expect("register");
    assert_eq!(file, FileRef::Fixed(3));

    let mut bufs = [AlignedBuf::new(8192, 4096), AlignedBuf::new(8192, 4096)];
    let iov: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|buf| libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        })
        .collect();
    // SAFETY: both buffers outlive the ring's use of them (until the end of this test).
    unsafe { ring.submitter().register_buffers(&iov) }.expect("register buffers");

    bufs[0].as_mut_slice().fill(0xA1);
    // SAFETY: `bufs[0]` is registered as index 0 and alive until the completion is reaped.
    let wf = unsafe { sqe::write_fixed(file, 65536, bufs[0].as_ptr(), 8192, 0, true, 1001) };
    let (ud, res) = run(&mut ring, &wf);
    assert_eq!((ud, decode_result(res, "write")), (1001, Ok(8192)));

    // SAFETY: `bufs[1]` is registered as index 1 and alive until the completion is reaped.
    let r = unsafe { sqe::read_fixed(file, 65536, bufs[1].as_mut_ptr(), 8192, 1, 1002) };
    let (ud, res) = run(&mut ring, &r);
    assert_eq!((ud, decode_result(res, "read")), (1002, Ok(8192)));
    assert!(bufs[1].as_slice().iter().all(|&b| b == 0xA1));

    // Vectored write of two pieces, then a vectored read back into one buffer.
    let first = [0x01u8; 4096];
    let second = [0x02u8; 4096];
    let wv = [
        libc::iovec {
            iov_base: first.as_ptr().cast_mut().cast(),
            iov_len: first.len(),
        },
        libc::iovec {
            iov_base: second.as_ptr().cast_mut().cast(),
            iov_len: second.len(),
        },
    ];
    // SAFETY: `wv`, `first` and `second` live until the completion is reaped.
    let e = unsafe { sqe::writev(file, 0, wv.as_ptr(), 2, false, 7) };
    assert_eq!(run(&mut ring, &e), (7, 8192));
    let mut back = vec![0u8; 8192];
    let rv = [libc::iovec {
        iov_base: back.as_mut_ptr().cast(),
        iov_len: back.len(),
    }];
    // SAFETY: `rv` and `back` live until the completion is reaped.
    let e = unsafe { sqe::readv(file, 0, rv.as_ptr(), 1, 8) };
    assert_eq!(run(&mut ring, &e), (8, 8192));
    assert!(back[..4096].iter().all(|&x| x == 1) && back[4096..].iter().all(|&x| x == 2));

    assert_eq!(run(&mut ring, &sqe::fdatasync(file, 9)), (9, 0));
    assert_eq!(
        run(&mut ring, &sqe::punch_hole(file, 65536, 4096, 10)),
        (10, 0)
    );
    assert_eq!(
        run(&mut ring, &sqe::zero_range(file, 69632, 4096, 11)),
        (11, 0)
    );
    // SAFETY: `bufs[1]` is registered and alive until the completion is reaped.
    let r = unsafe { sqe::read_fixed(file, 65536, bufs[1].as_mut_ptr(), 8192, 1, 12) };
    assert_eq!(run(&mut ring, &r), (12, 8192));
    assert!(
        bufs[1].as_slice().iter().all(|&x| x == 0),
        "punched and zeroed"
    );

    // Plain (unregistered) descriptor and plain buffer.
    let plain = backing.file_ref();
    let mut small = [0u8; 512];
    // SAFETY: `small` lives until the completion is reaped.
    let r = unsafe { sqe::read(plain, 0, small.as_mut_ptr(), 512, 13) };
    assert_eq!(run(&mut ring, &r), (13, 512));
    assert_eq!(small, [1u8; 512]);
}

#[test]
fn short_read_at_eof_is_resubmitted_then_zero_filled() {
    let Some(mut ring) = ring() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = BackingOptions {
        create: true,
        size: Some(1 << 20),
        ..Default::default()
    };
    let backing = BackingFile::open(dir.path().join("short.img"), &opts).expect("open");
    std::fs::write(dir.path().join("short.img"), vec![5u8; 6000]).expect("shrink to 6000 bytes");
    let file = backing.file_ref();
    let mut buf = AlignedBuf::new(16384, 4096);
    buf.as_mut_slice().fill(0xFF);
    let mut t = Transfer::new(Direction::Read, 0, 16384, backing.size_bytes(), 1);
    let mut next = t.remainder();
    let mut rounds = 0;
    loop {
        match next {
            Next::Resubmit {
                offset,
                buf_pos,
                len,
            } => {
                rounds += 1;
                // SAFETY: `buf` lives until the completion is reaped; buf_pos + len <= 16384.
                let e = unsafe {
                    sqe::read(file, offset, buf.as_mut_ptr().add(buf_pos), len as u32, 77)
                };
                let (_, res) = run(&mut ring, &e);
                next = t.on_result(res).expect("no error");
            }
            Next::ZeroFill { buf_pos, len } => {
                buf.as_mut_slice()[buf_pos..buf_pos + len].fill(0);
                break;
            }
            Next::Done => panic!("the file is shorter than the read"),
        }
    }
    assert!(rounds >= 2, "the EOF is seen by a second submission");
    assert!(
        buf.as_slice()[..6000].iter().all(|&b| b == 5)
            && buf.as_slice()[6000..].iter().all(|&b| b == 0)
    );
}

#[test]
fn errno_of_a_completion_maps_to_backend_errors() {
    let Some(mut ring) = ring() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = BackingOptions {
        create: true,
        size: Some(65536),
        ..Default::default()
    };
    let backing = BackingFile::open(dir.path().join("ro.img"), &opts).expect("open");
    let ro = BackingFile::open(
        dir.path().join("ro.img"),
        &BackingOptions {
            read_only: true,
            ..Default::default()
        },
    )
    .expect("open read-only");
    let data = [0u8; 512];
    // SAFETY: `data` lives until the completion is reaped.
    let e = unsafe { sqe::write(ro.file_ref(), 0, data.as_ptr(), 512, false, 1) };
    let (_, res) = run(&mut ring, &e);
    assert_eq!(res, -libc::EBADF);
    assert!(matches!(
        decode_result(res, "write"),
        Err(BackendError::Other(_))
    ));
    let (_, res) = run(&mut ring, &sqe::punch_hole(ro.file_ref(), 0, 4096, 2));
    assert!(decode_result(res, "unmap").is_err());
    drop(backing);
}
