//! How the writer takes requests off its queue: whatever is queued, at once.
//!
//! On its own thread (SQLite) the writer may also hand its CPU to the producers first when
//! events arrive fast. There a commit's cost is mostly per commit, not per event (every run in
//! the batch dirties a page of the run's index, and SQLite writes each page's frame with system
//! calls of its own), and on a core shared with the runtime the writer woke at each run's first
//! event and preempted the runs: a firehose of 20 runs was written ≈ 14 events at a time.
//! Yielding once when it wakes, before it takes the rest of the queue, lets the runs fill it;
//! on a core with nothing else to run the yield returns at once. Below
//! [`BUSY_EVENTS_PER_SEC`] the relay stays latency-first: bursts of an interactive load are
//! written as they come.
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::{Request, MAX_ROWS};

/// Arrivals at which the writer starts yielding at each wake-up: 8 × the 50-stream
/// benchmark's steady 2,500 events/s, far below a firehose's 150,000.
const BUSY_EVENTS_PER_SEC: u64 = 20_000;
/// How long a span of arrivals the rate is taken over, so that a burst of a few dozen events
/// (50 streams' events, every 20 ms) is not taken for a sustained load.
const RATE_WINDOW: Duration = Duration::from_millis(10);

pub(super) struct Gather {
    /// Set when the writer yields under a sustained load: how fast requests arrive.
    yields_when_busy: Option<ArrivalRate>,
}

impl Gather {
    /// Takes what is queued, as it comes (a writer that shares a runtime's threads).
    pub(super) fn as_queued() -> Self {
        Self {
            yields_when_busy: None,
        }
    }

    /// As [`Gather::as_queued`], but under a sustained load yields the thread's CPU once it
    /// wakes, then tops the batch up (a writer on a thread of its own).
    pub(super) fn yielding_when_busy() -> Self {
        Self {
            yields_when_busy: Some(ArrivalRate::new(Instant::now())),
        }
    }

    /// Waits for requests and moves up to [`MAX_ROWS`] of them into `buffer`; 0 once the queue
    /// is closed and empty.
    pub(super) async fn receive(
        &mut self,
        requests: &mut mpsc::Receiver<Request>,
        buffer: &mut Vec<Request>,
    ) -> usize {
        let count = requests.recv_many(buffer, MAX_ROWS).await;
        let Some(rate) = self.yields_when_busy.as_mut() else {
            return count;
        };
        if count > 0 && rate.note(count, Instant::now()) && buffer.len() < MAX_ROWS {
            std::thread::yield_now();
            while buffer.len() < MAX_ROWS {
                match requests.try_recv() {
                    Ok(request) => buffer.push(request),
                    Err(_) => break,
                }
            }
        }
        buffer.len()
    }
}

/// Whether requests arrive faster than [`BUSY_EVENTS_PER_SEC`], judged over the last
/// [`RATE_WINDOW`] that ended.
struct ArrivalRate {
    window_start: Instant,
    in_window: u64,
    busy: bool,
}

impl ArrivalRate {
    fn new(now: Instant) -> Self {
        Self {
            window_start: now,
            in_window: 0,
            busy: false,
        }
    }

    /// Counts `arrived` requests taken at `now`; returns whether the load is sustained.
    fn note(&mut self, arrived: usize, now: Instant) -> bool {
        let span = now.saturating_duration_since(self.window_start);
        if span >= RATE_WINDOW {
            // Over the whole span since the window began: a writer that waited idle for a
            // second does not count a second's trickle as one window's.
            let per_sec = self.in_window as u128 * 1_000_000 / span.as_micros().max(1);
            self.busy = per_sec >= u128::from(BUSY_EVENTS_PER_SEC);
            self.window_start = now;
            self.in_window = 0;
        }
        self.in_window += arrived as u64;
        self.busy
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_os = "linux")]
    use super::super::one_cpu::OneCpu;
    #[cfg(target_os = "linux")]
    use super::super::QUEUE;
    use super::*;

    /// Feeds `batches` of `size` arrivals `apart`; returns at how many of them the load was
    /// called sustained.
    fn busy_batches(batches: u32, size: usize, apart: Duration) -> u32 {
        let start = Instant::now();
        let mut rate = ArrivalRate::new(start);
        (0..batches)
            .filter(|&i| rate.note(size, start + apart * i))
            .count() as u32
    }

    #[test]
    fn a_firehose_is_a_sustained_load_after_its_first_window() {
        // 14 events every 50 µs: 280,000 events/s.
        let busy = busy_batches(2_000, 14, Duration::from_micros(50));
        let first_window = (RATE_WINDOW.as_micros() / 50) as u32;
        assert_eq!(busy, 2_000 - first_window);
    }

    #[test]
    fn bursts_of_fifty_streams_are_written_as_they_come() {
        // The latency benchmark's shape: 50 events within a millisecond, every 20 ms.
        let start = Instant::now();
        let mut rate = ArrivalRate::new(start);
        for burst in 0..500u32 {
            let at = start + Duration::from_millis(20) * burst;
            for event in 0..50u32 {
                let busy = rate.note(1, at + Duration::from_micros(20) * event);
                assert!(!busy, "burst {burst}, event {event}");
            }
        }
    }

    #[test]
    fn a_trickle_after_a_long_idle_spell_is_not_a_sustained_load() {
        let start = Instant::now();
        let mut rate = ArrivalRate::new(start);
        // 300 events in the first window, then nothing for a second.
        assert!(!rate.note(300, start));
        assert!(!rate.note(1, start + Duration::from_secs(1)));
        assert!(!rate.note(1, start + Duration::from_secs(1) + RATE_WINDOW));
    }

    #[test]
    fn the_load_ends_when_arrivals_slow_down() {
        let start = Instant::now();
        let mut rate = ArrivalRate::new(start);
        for i in 0..=20u32 {
            rate.note(500, start + Duration::from_millis(1) * i);
        }
        assert!(rate.note(1, start + Duration::from_millis(21)));
        // One event a millisecond (1,000 per second) for two windows.
        let slow: Vec<bool> = (22..50u32)
            .map(|ms| rate.note(1, start + Duration::from_millis(ms.into())))
            .collect();
        assert!(!slow.last().unwrap(), "{slow:?}");
    }

    /// What `gather` takes at each receive while a thread on the same CPU queues requests
    /// as fast as it can for `for_how_long`, from the first window on (the rate needs one).
    #[cfg(target_os = "linux")]
    fn batches_on_a_shared_cpu(mut gather: Gather, for_how_long: Duration) -> Vec<usize> {
        let _pinned = OneCpu::pin();
        let (queue, mut requests) = mpsc::channel(QUEUE);
        let producer = std::thread::spawn(move || {
            let started = Instant::now();
            while started.elapsed() < for_how_long {
                let (done, _) = tokio::sync::oneshot::channel();
                if queue.blocking_send(Request::Flush(done)).is_err() {
                    return;
                }
            }
        });
        let started = Instant::now();
        let mut buffer = Vec::with_capacity(MAX_ROWS);
        let mut batches = Vec::new();
        loop {
            let count = futures::executor::block_on(gather.receive(&mut requests, &mut buffer));
            if count == 0 {
                break;
            }
            if started.elapsed() > RATE_WINDOW * 2 {
                batches.push(count);
            }
            buffer.clear();
        }
        producer.join().expect("the producer");
        batches
    }

    /// The writer's yield is what fills its batches on a core it shares: without it (as
    /// queued) a receiver on the producer's CPU wakes at the first requests and preempts it
    /// (≈ 5 requests a receive here, against ≈ 900 with the yield).
    #[cfg(target_os = "linux")]
    #[test]
    fn under_a_sustained_load_on_a_shared_cpu_batches_fill_up() {
        let batches =
            batches_on_a_shared_cpu(Gather::yielding_when_busy(), Duration::from_millis(300));
        let average = batches.iter().sum::<usize>() / batches.len().max(1);
        assert!(
            average >= MAX_ROWS / 4,
            "{} batches, {average} requests each on average",
            batches.len()
        );
    }
}
