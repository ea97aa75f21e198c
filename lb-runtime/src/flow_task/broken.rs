//! The driver's deliberate bugs (`seams` only): the simulation's broken builds of the flow
//! task, each a wrong move a check must catch. Some connections (those whose id is 1
//! modulo 4) are affected, so a run has both broken and healthy ones.

use super::{IoEvent, Op};
use bytes::Bytes;
use lb_sans_io::defect::{Defect, Defects};
use lb_sans_io::{FlowId, Side};
use std::collections::VecDeque;

/// One flow's share of the driver's defects.
pub(super) struct BrokenFlow {
    defects: Defects,
    affected: bool,
    id: FlowId,
    writes_to_client: u32,
    held: Option<Bytes>,
    reset_done: bool,
}

impl BrokenFlow {
    pub(super) fn new(defects: Defects, id: FlowId) -> BrokenFlow {
        BrokenFlow {
            defects,
            affected: id.0 % 4 == 1,
            id,
            writes_to_client: 0,
            held: None,
            reset_done: false,
        }
    }

    fn has(&self, d: Defect) -> bool {
        self.affected && self.defects.has(d)
    }

    /// A `Write` action: queues it (or not) the broken way. False when it is not this
    /// module's to handle.
    pub(super) fn write<S>(
        &mut self,
        side: Side,
        data: &Bytes,
        queue: &mut VecDeque<Op>,
        events: &mut Vec<IoEvent<S>>,
    ) -> bool {
        if side != Side::Client {
            return false;
        }
        self.writes_to_client += 1;
        let second = self.writes_to_client == 2;
        if second && self.has(Defect::DropChunk) {
            // Reported written, never sent.
            events.push(IoEvent::Written(side, data.len()));
            return true;
        }
        if second && self.has(Defect::DuplicateChunk) {
            queue.push_back(Op::Write(data.clone()));
            queue.push_back(Op::Write(data.clone()));
            return true;
        }
        if self.has(Defect::ReorderChunks) {
            if second {
                self.held = Some(data.clone());
                return true;
            }
            if let Some(held) = self.held.take() {
                queue.push_back(Op::Write(data.clone()));
                queue.push_back(Op::Write(held));
                return true;
            }
        }
        false
    }

    /// Before a shutdown or close of the client side: a chunk held back goes out now.
    pub(super) fn flush(&mut self, queue: &mut VecDeque<Op>) {
        if let Some(held) = self.held.take() {
            queue.push_back(Op::Write(held));
        }
    }

    /// An event as the broken driver reports it.
    pub(super) fn event<S>(&mut self, event: IoEvent<S>) -> IoEvent<S> {
        match event {
            IoEvent::Read(Side::Backend, _)
                if !self.reset_done && self.has(Defect::SpuriousReset) =>
            {
                self.reset_done = true;
                IoEvent::Failed(Side::Backend)
            }
            e => e,
        }
    }

    /// Whether the closed flow is never given back to the pool.
    pub(super) fn skip_release(&self) -> bool {
        self.has(Defect::LeakFlow)
    }

    /// Panics, for the flow the defect picks.
    pub(super) fn maybe_panic(&self) {
        if self.defects.has(Defect::PanicInFlow) && self.id.0 == 5 {
            panic!(
                "deliberate panic in flow {} (Defect::PanicInFlow)",
                self.id.0
            );
        }
    }
}
