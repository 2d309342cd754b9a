//! One writer per store: an OS file lock (`flock`) on `STORE/.lock`, held for as long as the writer lives
//! and released by the OS when the process ends, however it ends (kill -9 leaves no stale lock). The holder
//! writes its pid into the file so a second writer can say who holds it. Readers never take it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::io_err;
use crate::{IndexError, Result};

/// The lock file's name inside a store folder.
pub const LOCK_FILE: &str = ".lock";

/// An exclusive writer's lock on a store folder (see the module docs).
#[derive(Debug)]
pub struct StoreLock {
    file: File,
    path: PathBuf,
}

/// What to do when another process holds the lock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LockWait {
    /// Fail at once with a message naming the holder's pid (the default).
    #[default]
    No,
    /// Block until the holder is done.
    Yes,
}

impl From<bool> for LockWait {
    /// A `--wait` flag: `true` waits.
    fn from(wait: bool) -> Self {
        if wait {
            LockWait::Yes
        } else {
            LockWait::No
        }
    }
}

impl StoreLock {
    /// Takes the lock on `dir` (created if missing). With [`LockWait::No`], a lock held by another process
    /// is an [`IndexError::Locked`] naming its pid. Once held, temp files left by writers that died
    /// mid-write (`.NAME.PID.tmp`) are removed: no live writer can own them any more.
    pub fn acquire(dir: &Path, wait: LockWait) -> Result<StoreLock> {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(|e| io_err(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                // The holder writes its pid just after taking the lock: give it a moment.
                let mut holder = read_holder(&mut file);
                for _ in 0..50 {
                    if holder.starts_with("pid ") {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    holder = read_holder(&mut file);
                }
                if wait == LockWait::No {
                    return Err(IndexError::Locked { path: dir.to_path_buf(), holder });
                }
                eprintln!("{}: waiting for the writer holding it ({holder}) to finish", dir.display());
                file.lock().map_err(|e| io_err(&path, e))?;
            }
            Err(TryLockError::Error(e)) => return Err(io_err(&path, e)),
        }
        let me = format!("pid {}", std::process::id());
        file.set_len(0).and_then(|_| file.seek(SeekFrom::Start(0))).and_then(|_| file.write_all(me.as_bytes())).map_err(|e| io_err(&path, e))?;
        let lock = StoreLock { file, path };
        lock.remove_stale_temp_files();
        Ok(lock)
    }

    /// Tries to take the lock without waiting: `None` when another process (or another handle in this
    /// process) holds it.
    pub fn try_acquire(dir: &Path) -> Result<Option<StoreLock>> {
        match Self::acquire(dir, LockWait::No) {
            Ok(l) => Ok(Some(l)),
            Err(IndexError::Locked { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The store folder this lock guards.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// Removes `.*.tmp` files in the store folder and its `index/` folder that this process did not make.
    fn remove_stale_temp_files(&self) {
        let mine = format!(".{}.tmp", std::process::id());
        for d in [self.dir().to_path_buf(), crate::layout::index_dir(self.dir())] {
            let Ok(rd) = std::fs::read_dir(&d) else { continue };
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') && name.ends_with(".tmp") && !name.ends_with(&mine) && e.file_type().is_ok_and(|t| t.is_file()) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

fn read_holder(file: &mut File) -> String {
    let mut s = String::new();
    let _ = file.seek(SeekFrom::Start(0)).and_then(|_| file.take(200).read_to_string(&mut s));
    let s = s.trim();
    if s.is_empty() {
        "another process".into()
    } else {
        s.to_string()
    }
}
