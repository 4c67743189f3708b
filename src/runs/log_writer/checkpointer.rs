//! The SQLite event log's checkpointer: a thread with a connection of its own that copies the
//! WAL into the database when the writer asks (and now and then regardless), while the writer
//! goes on writing. A checkpoint fsyncs the WAL and the database (milliseconds on a VM); on
//! the writer's thread every event that arrived meanwhile waited for it.
//!
//! It runs at the lowest CPU priority (Linux `SCHED_IDLE`) where that can be undone: a
//! checkpoint copies thousands of pages, and at normal priority the scheduler shared the core
//! with it while events waited. But a checkpoint it began and that then found the core busy
//! for good held SQLite's checkpoint lock for good too, and the writer's own checkpoint (the
//! WAL's size bound) could never run. So the writer lifts its priority when it needs that lock
//! and the WAL is past twice the bound ([`Checkpointer::hurry`]). The kernel lets a thread
//! leave `SCHED_IDLE` only with `CAP_SYS_NICE` or an `RLIMIT_NICE` of 20 or more; a process
//! without either keeps the checkpointer at normal priority instead.
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode};

/// The checkpointer also runs this often when nothing asked it to: other connections (the
/// pool's) write to the file too.
const CHECKPOINT_AT_LEAST_EVERY: Duration = Duration::from_secs(5);

/// How the checkpointer thread is scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Priority {
    /// Linux `SCHED_IDLE`, lifted by [`Checkpointer::hurry`].
    WhenIdle,
    /// Normal: this process could not lift `SCHED_IDLE` again.
    Normal,
}

impl Priority {
    /// `WhenIdle` where this process can undo it, else `Normal` (tried once per process).
    pub(super) fn for_this_process() -> Self {
        static PRIORITY: OnceLock<Priority> = OnceLock::new();
        *PRIORITY.get_or_init(|| {
            if idle_priority_can_be_lifted() {
                Priority::WhenIdle
            } else {
                tracing::info!(
                    "the event log's checkpointer runs at normal priority: this process may \
                     not lift a thread out of SCHED_IDLE (it needs CAP_SYS_NICE or an \
                     RLIMIT_NICE of 20)"
                );
                Priority::Normal
            }
        })
    }
}

pub(super) struct Checkpointer {
    requests: std_mpsc::SyncSender<()>,
    /// The checkpointer thread's id (Linux), for [`Checkpointer::hurry`]; 0 while unknown.
    thread_id: Arc<AtomicI32>,
}

impl Checkpointer {
    /// Starts the checkpointer's thread on `conn`, at the priority this process allows.
    pub(super) fn start(conn: Connection) -> std::io::Result<Self> {
        Self::start_at(conn, Priority::for_this_process())
    }

    pub(super) fn start_at(conn: Connection, priority: Priority) -> std::io::Result<Self> {
        let (requests, asked) = std_mpsc::sync_channel(1);
        let thread_id = Arc::new(AtomicI32::new(0));
        let own_id = thread_id.clone();
        std::thread::Builder::new()
            .name("event-log-checkpointer".into())
            .spawn(move || {
                let _published = PublishedThreadId::of_this_thread(own_id);
                checkpoint_until_closed(&conn, &asked, priority)
            })?;
        Ok(Self {
            requests,
            thread_id,
        })
    }

    /// A checkpointer with no thread: requests go to `requests` and nothing else happens.
    #[cfg(test)]
    pub(super) fn without_thread(requests: std_mpsc::SyncSender<()>) -> Self {
        Self {
            requests,
            thread_id: Default::default(),
        }
    }

    /// Asks for a checkpoint; one asked for already and not begun stands for both.
    pub(super) fn request(&self) {
        let _ = self.requests.try_send(());
    }

    /// Gives the checkpointer normal priority until its next checkpoint begins, so that the
    /// one it is running ends. A checkpointer at normal priority is left as it is; so is one
    /// whose thread has ended.
    pub(super) fn hurry(&self) {
        #[cfg(target_os = "linux")]
        {
            let thread = self.thread_id.load(Ordering::Relaxed);
            if thread == 0 {
                return;
            }
            let param = libc::sched_param { sched_priority: 0 };
            // SAFETY: plain system call on a thread of this process with a valid parameter.
            unsafe { libc::sched_setscheduler(thread, libc::SCHED_OTHER, &param) };
        }
    }
}

/// The id of the thread that holds it, published until that thread ends (even by a panic):
/// the system gives an ended thread's id to the next thread it starts, in any process.
struct PublishedThreadId(Arc<AtomicI32>);

impl PublishedThreadId {
    fn of_this_thread(slot: Arc<AtomicI32>) -> Self {
        slot.store(current_thread_id(), Ordering::Relaxed);
        Self(slot)
    }
}

impl Drop for PublishedThreadId {
    fn drop(&mut self) {
        self.0.store(0, Ordering::Relaxed);
    }
}

fn current_thread_id() -> i32 {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `gettid` takes no argument and cannot fail.
        unsafe { libc::gettid() }
    }
    #[cfg(not(target_os = "linux"))]
    0
}

/// Whether a thread of this process can leave `SCHED_IDLE` again: tried on a thread of its
/// own, which ends at once.
fn idle_priority_can_be_lifted() -> bool {
    #[cfg(target_os = "linux")]
    {
        let tried = std::thread::spawn(|| {
            let param = libc::sched_param { sched_priority: 0 };
            // SAFETY: plain system calls on the calling thread with a valid parameter.
            unsafe {
                libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) == 0
                    && libc::sched_setscheduler(0, libc::SCHED_OTHER, &param) == 0
            }
        });
        tried.join().unwrap_or(false)
    }
    #[cfg(not(target_os = "linux"))]
    false
}

/// Gives the calling thread the lowest CPU priority (Linux `SCHED_IDLE`). It may wait: when
/// the core never idles, the WAL's size bound applies, and the writer lifts it.
fn run_only_when_idle() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: plain system call on the calling thread with a valid parameter.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } != 0 {
            let error = std::io::Error::last_os_error();
            tracing::debug!(%error, "the checkpointer keeps its CPU priority");
        }
    }
}

/// The checkpointer's loop; it ends when the writer is gone.
fn checkpoint_until_closed(conn: &Connection, asked: &std_mpsc::Receiver<()>, priority: Priority) {
    loop {
        match asked.recv_timeout(CHECKPOINT_AT_LEAST_EVERY) {
            Ok(()) | Err(std_mpsc::RecvTimeoutError::Timeout) => {}
            Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
        }
        // Again for every checkpoint: the writer may have lifted it.
        if priority == Priority::WhenIdle {
            run_only_when_idle();
        }
        match passive_checkpoint(conn) {
            Ok((frames, copied)) => tracing::debug!(frames, copied, "event log checkpoint"),
            // Another checkpoint is running (the writer's): the next request tries again.
            Err(e) if e.sqlite_error_code() == Some(ErrorCode::DatabaseBusy) => {}
            Err(e) => tracing::warn!(error = %e, "event log checkpoint failed"),
        }
    }
}

/// Copies the WAL into the database as far as no reader needs it kept, without waiting for
/// readers or the writer. Returns the frames in the WAL and how many of them are copied now
/// (both -1 when it did not begin: another checkpoint was running).
pub(super) fn passive_checkpoint(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        Ok((row.get(1)?, row.get(2)?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drops `CAP_SYS_NICE` from the calling thread's effective capabilities (threads it
    /// starts inherit that); the other capabilities stay.
    #[cfg(target_os = "linux")]
    fn drop_cap_sys_nice() {
        const CAP_SYS_NICE: u32 = 23;
        const VERSION_3: u32 = 0x2008_0522;
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy, Default)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        let mut header = Header {
            version: VERSION_3,
            pid: 0,
        };
        let mut data = [Data::default(); 2];
        // SAFETY: capget/capset with a version-3 header and two data words, as the kernel asks.
        unsafe {
            assert_eq!(
                libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()),
                0
            );
            data[0].effective &= !(1 << CAP_SYS_NICE);
            assert_eq!(
                libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()),
                0
            );
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_thread_without_cap_sys_nice_cannot_leave_sched_idle_so_the_checkpointer_stays_normal() {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: reads the process's limit into a valid struct.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NICE, &mut limit) }, 0);
        if limit.rlim_cur >= 20 {
            // This process may lift SCHED_IDLE without the capability: nothing to see.
            return;
        }
        let without = std::thread::spawn(|| {
            drop_cap_sys_nice();
            idle_priority_can_be_lifted()
        })
        .join()
        .expect("thread");
        assert!(!without, "lifted SCHED_IDLE without CAP_SYS_NICE");
    }
}
