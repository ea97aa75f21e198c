//! The admin endpoint's connection slots, and who makes room when they are all taken.
//!
//! The endpoint serves at most a fixed number of connections at once. A local process
//! that opens that many and sends nothing must not make `/status` unreachable, so a new
//! connection that finds every slot taken takes one from a connection that is not being
//! answered: first the oldest one whose answer is already written (it only waits for its
//! client to close), else the oldest one still waiting for its request head. A connection
//! whose head is complete keeps its slot until its answer is written. Only when every slot
//! is answering a request is the new connection refused.
//!
//! The driver keeps one [`Slots`], asks [`Slots::admit`] at each accept, reports each
//! connection's [`Stage`] as it moves on, and [`Slots::release`]s it when it ends. Each
//! slot holds a value of the driver's choosing (`T`, e.g. the means to tell that
//! connection's task to stop), handed back when the connection is evicted.

use std::collections::BTreeMap;

/// Where a connection is in its one exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// Waiting for a complete request head: may be evicted.
    Head,
    /// The request is being answered: keeps its slot.
    Answer,
    /// The answer is written; waiting for the client to close: evicted first.
    Linger,
}

/// A connection's slot, in accept order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SlotId(pub u64);

/// What [`Slots::admit`] decided for a new connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission<T> {
    /// Serve it in slot `id`; if every slot was taken, `evicted` is the value of the
    /// connection that made room (the driver closes that one, with a `408`).
    Admitted {
        /// The new connection's slot.
        id: SlotId,
        /// The evicted connection's slot and value, if one made room.
        evicted: Option<(SlotId, T)>,
    },
    /// Every slot is answering a request: close the new connection.
    Refused,
}

/// The connection slots. See the module docs.
#[derive(Debug)]
pub struct Slots<T> {
    capacity: usize,
    next: u64,
    open: BTreeMap<SlotId, (Stage, T)>,
}

impl<T> Slots<T> {
    /// At most `capacity` connections at once (at least one).
    pub fn new(capacity: usize) -> Slots<T> {
        Slots {
            capacity: capacity.max(1),
            next: 0,
            open: BTreeMap::new(),
        }
    }

    /// A new connection, holding `value`, in [`Stage::Head`]: admitted in a free slot, or
    /// in one taken from the oldest lingering connection, else from the oldest one waiting
    /// for its head; refused if every slot is answering.
    pub fn admit(&mut self, value: T) -> Admission<T> {
        let evicted = if self.open.len() < self.capacity {
            None
        } else {
            let victim = self
                .oldest(Stage::Linger)
                .or_else(|| self.oldest(Stage::Head));
            match victim.and_then(|id| self.open.remove(&id).map(|(_, v)| (id, v))) {
                Some(evicted) => Some(evicted),
                None => return Admission::Refused,
            }
        };
        let id = SlotId(self.next);
        self.next += 1;
        self.open.insert(id, (Stage::Head, value));
        Admission::Admitted { id, evicted }
    }

    /// Connection `id` moved on to `stage` (ignored if it no longer has a slot).
    pub fn set_stage(&mut self, id: SlotId, stage: Stage) {
        if let Some((s, _)) = self.open.get_mut(&id) {
            *s = stage;
        }
    }

    /// Connection `id` ended: its slot is free. False if it had none (it was evicted).
    pub fn release(&mut self, id: SlotId) -> bool {
        self.open.remove(&id).is_some()
    }

    /// Connections holding a slot.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// Whether no connection holds a slot.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// The stage of connection `id`, if it holds a slot.
    pub fn stage(&self, id: SlotId) -> Option<Stage> {
        self.open.get(&id).map(|(s, _)| *s)
    }

    /// The oldest connection in `stage`.
    fn oldest(&self, stage: Stage) -> Option<SlotId> {
        self.open
            .iter()
            .find(|(_, (s, _))| *s == stage)
            .map(|(id, _)| *id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted<T: std::fmt::Debug>(a: Admission<T>) -> (SlotId, Option<(SlotId, T)>) {
        match a {
            Admission::Admitted { id, evicted } => (id, evicted),
            Admission::Refused => panic!("refused"),
        }
    }

    #[test]
    fn free_slots_are_taken_without_evicting_anyone() {
        let mut slots = Slots::new(3);
        for i in 0..3 {
            assert_eq!(admitted(slots.admit(i)), (SlotId(i), None));
        }
        assert_eq!(slots.len(), 3);
        assert!(slots.release(SlotId(1)));
        assert!(!slots.release(SlotId(1)));
        assert_eq!(admitted(slots.admit(9)), (SlotId(3), None));
    }

    #[test]
    fn when_full_the_oldest_connection_waiting_for_its_head_makes_room() {
        let mut slots = Slots::new(3);
        for i in 0..3 {
            admitted(slots.admit(i));
        }
        // 0 is being answered: 1 is the oldest still waiting for its head.
        slots.set_stage(SlotId(0), Stage::Answer);
        assert_eq!(admitted(slots.admit(10)), (SlotId(3), Some((SlotId(1), 1))));
        assert_eq!(slots.stage(SlotId(1)), None);
        assert_eq!(slots.len(), 3);
        // The evicted connection's own release later frees nothing.
        assert!(!slots.release(SlotId(1)));
        assert_eq!(slots.len(), 3);
        assert_eq!(admitted(slots.admit(11)), (SlotId(4), Some((SlotId(2), 2))));
        // An idle attacker that keeps reconnecting only ever evicts itself: the
        // connection being answered keeps its slot.
        for i in 0..100 {
            let (_, evicted) = admitted(slots.admit(100 + i));
            assert!(evicted.is_some_and(|(id, _)| id != SlotId(0)));
        }
        assert_eq!(slots.stage(SlotId(0)), Some(Stage::Answer));
    }

    #[test]
    fn a_lingering_connection_makes_room_before_one_waiting_for_its_head() {
        let mut slots = Slots::new(2);
        admitted(slots.admit("waiting"));
        admitted(slots.admit("answered"));
        slots.set_stage(SlotId(1), Stage::Linger);
        assert_eq!(
            admitted(slots.admit("new")),
            (SlotId(2), Some((SlotId(1), "answered")))
        );
    }

    #[test]
    fn only_when_every_slot_is_answering_is_a_new_connection_refused() {
        let mut slots = Slots::new(2);
        admitted(slots.admit(0));
        admitted(slots.admit(1));
        slots.set_stage(SlotId(0), Stage::Answer);
        slots.set_stage(SlotId(1), Stage::Answer);
        assert_eq!(slots.admit(2), Admission::Refused);
        assert_eq!(slots.len(), 2);
        slots.set_stage(SlotId(1), Stage::Linger);
        assert_eq!(admitted(slots.admit(3)).1, Some((SlotId(1), 1)));
    }
}
