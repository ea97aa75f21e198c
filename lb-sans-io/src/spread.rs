//! How new connections spread over the workers: when a worker takes a connection from
//! another worker's accept queue.
//!
//! Each worker accepts on its own socket of a listener's `SO_REUSEPORT` group, and the
//! kernel hashes each new client to one of them, blind to how busy each worker is. A
//! worker that holds more open connections than another for a while makes its clients
//! wait. So a worker also watches another worker's queue ([`watched_queue`]: the next
//! worker's, round the ring) and takes a waiting client from it when that worker is busier
//! by a margin ([`take_from_other`]); the owner still accepts everything from its own
//! queue, so no client waits unseen.
//!
//! Where each worker runs: one CPU of its own when there is one worker per CPU the process
//! may use ([`worker_cpus`]), and each worker's socket of the group asks the kernel for the
//! clients whose packets that CPU handles (`SO_INCOMING_CPU`).

/// How many more open connections the owner of a queue must have than the worker that
/// would take from it. With a margin of one, two workers whose loads differ by one would
/// trade connections back and forth (each take turns the difference around); two keeps
/// equally (or nearly equally) loaded workers from racing for each other's clients.
pub const TAKE_MARGIN: usize = 2;

/// Whether a worker with `mine` open connections takes a client waiting in the queue of a
/// worker with `owner` open connections: only when the owner is busier by at least
/// [`TAKE_MARGIN`].
pub fn take_from_other(mine: usize, owner: usize) -> bool {
    owner.saturating_sub(mine) >= TAKE_MARGIN
}

/// The one other worker's queue that worker `worker` of `workers` watches, if any: the
/// next one's, round the ring. One, not all: every client arriving in a queue wakes each
/// worker that watches it, so with every worker watching every other a new client would
/// wake all of them; round a ring it wakes two, and an imbalance still drains, worker by
/// worker, in the direction of the ring.
pub fn watched_queue(worker: usize, workers: usize) -> Option<usize> {
    (workers > 1 && worker < workers).then(|| (worker + 1) % workers)
}

/// The CPU each worker is bound to, worker by worker, or `None` to leave the workers to the
/// scheduler. Bound only when `affinity` is on and there are exactly as many workers as
/// CPUs the process may run on (`allowed`, the process's affinity set): each worker then
/// gets one of them, in ascending order. With fewer workers than CPUs (a CPU quota of a
/// container, say) binding them would leave CPUs the process may use idle by choice, so
/// they are left to move.
///
/// Bound, a worker stays on the CPU whose caches hold its connections, and with
/// `SO_INCOMING_CPU` it accepts the clients whose packets that CPU handles, so a
/// connection's kernel and user-space work run on one CPU (docs/performance.md measured a
/// shorter tail on small requests, and CPU per request within the run-to-run spread).
pub fn worker_cpus(affinity: bool, workers: usize, allowed: &[usize]) -> Option<Vec<usize>> {
    let mut cpus = allowed.to_vec();
    cpus.sort_unstable();
    cpus.dedup();
    (affinity && workers > 0 && cpus.len() == workers).then_some(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_worker_per_allowed_cpu_binds_each_to_its_own() {
        assert_eq!(worker_cpus(true, 2, &[0, 1]), Some(vec![0, 1]));
        // The affinity set as the kernel lists it need not be in order, nor start at 0.
        assert_eq!(worker_cpus(true, 3, &[7, 3, 5]), Some(vec![3, 5, 7]));
        assert_eq!(worker_cpus(true, 1, &[4]), Some(vec![4]));
    }

    #[test]
    fn workers_are_left_to_the_scheduler_unless_each_has_a_cpu() {
        // Turned off.
        assert_eq!(worker_cpus(false, 2, &[0, 1]), None);
        // Fewer workers than CPUs (a CPU quota): binding would leave CPUs unused.
        assert_eq!(worker_cpus(true, 2, &[0, 1, 2, 3]), None);
        // More workers than CPUs: two would share one.
        assert_eq!(worker_cpus(true, 4, &[0, 1]), None);
        assert_eq!(worker_cpus(true, 2, &[1, 1]), None);
        // Nothing known about the CPUs.
        assert_eq!(worker_cpus(true, 2, &[]), None);
        assert_eq!(worker_cpus(true, 0, &[]), None);
    }

    #[test]
    fn each_worker_watches_the_next_one_round_the_ring() {
        assert_eq!(watched_queue(0, 1), None);
        assert_eq!(watched_queue(0, 2), Some(1));
        assert_eq!(watched_queue(1, 2), Some(0));
        let watched: Vec<_> = (0..4).map(|w| watched_queue(w, 4)).collect();
        assert_eq!(watched, [Some(1), Some(2), Some(3), Some(0)]);
        // Every queue is watched by exactly one other worker.
        for workers in 2..9 {
            let mut seen: Vec<usize> = (0..workers)
                .filter_map(|w| watched_queue(w, workers))
                .collect();
            seen.sort_unstable();
            assert_eq!(seen, (0..workers).collect::<Vec<_>>());
            assert!((0..workers).all(|w| watched_queue(w, workers) != Some(w)));
        }
        assert_eq!(watched_queue(5, 4), None);
    }

    #[test]
    fn a_much_busier_owner_gives_up_its_clients() {
        assert!(take_from_other(0, 2));
        assert!(take_from_other(3, 5));
        assert!(take_from_other(0, 1000));
    }

    #[test]
    fn equal_or_nearly_equal_workers_do_not_trade_clients() {
        for mine in [0, 1, 7, 1000] {
            assert!(!take_from_other(mine, mine), "{mine} vs {mine}");
            assert!(!take_from_other(mine, mine + 1), "{mine} vs {}", mine + 1);
        }
    }

    #[test]
    fn a_less_busy_owner_keeps_its_clients() {
        assert!(!take_from_other(5, 0));
        assert!(!take_from_other(5, 3));
    }

    #[test]
    fn a_huge_load_does_not_overflow() {
        assert!(!take_from_other(usize::MAX, usize::MAX));
        assert!(!take_from_other(usize::MAX - 1, usize::MAX));
    }
}
