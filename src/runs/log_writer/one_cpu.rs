//! Tests' pinning to one CPU: the writer's behaviour on a core it shares (the checkpointer's
//! priority, the writer's yield) shows only when its threads cannot move to another.

/// Pins the calling thread, and the threads it starts from now on, to one CPU; undone when
/// dropped.
pub(super) struct OneCpu {
    before: libc::cpu_set_t,
}

impl OneCpu {
    pub(super) fn pin() -> Self {
        let size = std::mem::size_of::<libc::cpu_set_t>();
        // SAFETY: affinity calls on the calling thread with CPU sets of the right size.
        unsafe {
            let mut before: libc::cpu_set_t = std::mem::zeroed();
            assert_eq!(libc::sched_getaffinity(0, size, &mut before), 0);
            let cpu = (0..libc::CPU_SETSIZE as usize)
                .find(|&cpu| libc::CPU_ISSET(cpu, &before))
                .expect("a CPU");
            let mut one: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut one);
            assert_eq!(libc::sched_setaffinity(0, size, &one), 0);
            Self { before }
        }
    }
}

impl Drop for OneCpu {
    fn drop(&mut self) {
        let size = std::mem::size_of::<libc::cpu_set_t>();
        // SAFETY: as in `pin`.
        unsafe { libc::sched_setaffinity(0, size, &self.before) };
    }
}
