//! Cutting a stream of read chunks into whole parts, without copying more than once:
//! the upload pass reads a run of parts from the source in chunks of whatever size the
//! source sends, and sends each part as soon as its last byte is in.

use super::Layout;

/// Cuts the bytes of parts `first..last` of a layout, pushed in chunks of any size, into
/// whole parts. It holds at most one part being filled plus one chunk not yet moved into
/// parts; a full part is handed out by value (moved, never copied again).
#[derive(Debug)]
pub struct PartCutter {
    layout: Layout,
    next: u64,
    last: u64,
    part: Vec<u8>,
    chunk: Vec<u8>,
    used: usize,
}

impl PartCutter {
    /// A cutter for parts `first..last` (the bytes pushed start at part `first`).
    pub fn new(layout: Layout, first: u64, last: u64) -> PartCutter {
        let part = Vec::with_capacity(if first < last { layout.len(first) as usize } else { 0 });
        PartCutter { layout, next: first, last, part, chunk: Vec::new(), used: 0 }
    }

    /// The index of the next part, when it is complete: moves what the last chunk holds
    /// into it first. Take it with [`PartCutter::take`].
    pub fn ready(&mut self) -> Option<u64> {
        if self.next >= self.last {
            return None;
        }
        let want = self.layout.len(self.next) as usize;
        if self.used < self.chunk.len() {
            let take = (want - self.part.len()).min(self.chunk.len() - self.used);
            self.part.extend_from_slice(&self.chunk[self.used..self.used + take]);
            self.used += take;
        }
        (self.part.len() == want).then_some(self.next)
    }

    /// Takes the complete part [`PartCutter::ready`] named, and starts the next one.
    pub fn take(&mut self) -> (u64, Vec<u8>) {
        debug_assert_eq!(self.ready(), Some(self.next), "take only a ready part");
        let index = self.next;
        let part = std::mem::take(&mut self.part);
        self.next += 1;
        if self.next < self.last {
            self.part.reserve(self.layout.len(self.next) as usize);
        }
        (index, part)
    }

    /// Whether the last chunk pushed is used up (only then may the next be pushed).
    pub fn wants_input(&self) -> bool {
        self.used >= self.chunk.len()
    }

    /// The next chunk read, once the last one is used up.
    pub fn push(&mut self, chunk: Vec<u8>) {
        debug_assert!(self.wants_input(), "push only after the last chunk is used up");
        self.chunk = chunk;
        self.used = 0;
    }

    /// Whether every part has been taken.
    pub fn is_done(&self) -> bool {
        self.next >= self.last
    }

    /// Bytes held: the part being filled plus the chunk not yet used up.
    pub fn held(&self) -> usize {
        self.part.len() + (self.chunk.len() - self.used)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any chunking of any run of parts gives exactly the layout's parts, in order,
        /// each handed out only when whole, never holding more than a part and a chunk.
        #[test]
        fn chunks_become_the_layout_parts(
            size in 1u64..5000,
            part in 1u64..700,
            cuts in prop::collection::vec(1usize..900, 1..40),
            from in any::<u64>(),
            span in any::<u64>(),
        ) {
            let layout = Layout::new(size, part).unwrap();
            let first = from % layout.count();
            let last = first + 1 + span % (layout.count() - first);
            let bytes: Vec<u8> = (0..size).map(|i| (i * 7 + i / 251) as u8).collect();
            let (start, end) = (layout.offset(first) as usize, layout.range(last - 1).end as usize);
            let mut cutter = PartCutter::new(layout, first, last);
            let mut at = start;
            let mut got = Vec::new();
            let mut cuts = cuts.iter().cycle();
            loop {
                while cutter.ready().is_some() {
                    got.push(cutter.take());
                }
                if cutter.is_done() { break; }
                prop_assert!(cutter.wants_input());
                let n = (*cuts.next().unwrap()).min(end - at);
                prop_assert!(n > 0, "bytes run out before the last part");
                cutter.push(bytes[at..at + n].to_vec());
                at += n;
                prop_assert!(cutter.held() <= part as usize + n);
            }
            prop_assert_eq!(at, end);
            prop_assert_eq!(got.len() as u64, last - first);
            for (k, (index, body)) in got.iter().enumerate() {
                prop_assert_eq!(*index, first + k as u64);
                let r = layout.range(*index);
                prop_assert_eq!(&body[..], &bytes[r.start as usize..r.end as usize]);
            }
        }
    }
}
