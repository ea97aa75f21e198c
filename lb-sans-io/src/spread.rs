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

#[cfg(test)]
mod tests {
    use super::*;

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
