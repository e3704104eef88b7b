//! A small private tmpfs for the state database's unit tests (a full disk, on demand), and
//! the only `unsafe` code of those tests: unshare(2) and mount(2) in the calling thread's
//! own mount namespace, umount2(2) when dropped.

use std::path::{Path, PathBuf};

/// A tmpfs of `size` mounted on a fresh directory, in a mount namespace of the calling
/// thread alone: the host never sees it, and it vanishes with the thread even if the
/// test process is killed. Unmounted in Drop. Needs root (CAP_SYS_ADMIN).
pub(super) struct SmallTmpfs {
    dir: tempfile::TempDir,
}

impl SmallTmpfs {
    pub(super) fn mount(size: &str) -> SmallTmpfs {
        let dir = tempfile::tempdir().unwrap();
        // SAFETY: unshare and mount with valid NUL-terminated strings; CLONE_NEWNS
        // (which implies CLONE_FS) gives this thread alone its own mount namespace.
        unsafe {
            assert_eq!(
                libc::unshare(libc::CLONE_NEWNS),
                0,
                "unshare(CLONE_NEWNS) (the state tests need root): {}",
                std::io::Error::last_os_error()
            );
            // Without this, the mount would propagate back to the host's namespace.
            let root = c"/";
            assert_eq!(
                libc::mount(
                    std::ptr::null(),
                    root.as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null()
                ),
                0,
                "make / private: {}",
                std::io::Error::last_os_error()
            );
            let target = std::ffi::CString::new(dir.path().as_os_str().as_encoded_bytes()).unwrap();
            let options = std::ffi::CString::new(format!("size={size},mode=0700")).unwrap();
            assert_eq!(
                libc::mount(
                    c"tmpfs".as_ptr(),
                    target.as_ptr(),
                    c"tmpfs".as_ptr(),
                    0,
                    options.as_ptr().cast()
                ),
                0,
                "mount tmpfs: {}",
                std::io::Error::last_os_error()
            );
        }
        SmallTmpfs { dir }
    }

    pub(super) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file until the filesystem is full; returns its path.
    pub(super) fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let block = [0u8; 4096];
        loop {
            match file.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
        path
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        let target =
            std::ffi::CString::new(self.dir.path().as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: umount2 with a valid path; MNT_DETACH also succeeds while the test's
        // database still holds files open there.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}
