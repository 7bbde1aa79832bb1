//! The records waiting in memory while they cannot be written (full disk, removed
//! folder): kept in order and written, oldest first, once writing works again.
//!
//! Bounded: whole record lines up to [`BACKLOG_BYTES`]; past that a record is kept
//! reduced to its id, trigger, time and verdict (written later as a short record saying
//! so) up to [`BACKLOG_REDUCED`] of them; past that it is lost (its part stays open in
//! the journal and gets a record at the next start). Reduced and lost records are
//! counted, and logged by the recorder.

use std::collections::VecDeque;
use std::time::SystemTime;

use super::decide::Verdict;

/// Bytes of whole record lines kept (about ten thousand records).
pub const BACKLOG_BYTES: usize = 8 << 20;
/// Records kept reduced to id and verdict once the lines are full (a few MiB).
pub const BACKLOG_REDUCED: usize = 200_000;

/// What a reduced record keeps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reduced {
    pub id: u64,
    pub trigger: &'static str,
    pub triggered: SystemTime,
    pub verdict: Verdict,
    pub fail_safe: bool,
}

/// One waiting record, as handed to the writer.
#[derive(Debug, PartialEq)]
pub enum Waiting {
    Line { id: u64, line: Vec<u8> },
    Reduced(Reduced),
}

impl Waiting {
    pub fn id(&self) -> u64 {
        match self {
            Waiting::Line { id, .. } => *id,
            Waiting::Reduced(r) => r.id,
        }
    }
}

/// What became of a record pushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    Whole,
    Reduced,
    Lost,
}

pub struct Backlog {
    items: VecDeque<Waiting>,
    bytes: usize,
    reduced_held: usize,
    max_bytes: usize,
    max_reduced: usize,
    /// Records kept reduced, and lost, since [`Backlog::take_counts`].
    reduced: u64,
    lost: u64,
}

impl Backlog {
    pub fn new(max_bytes: usize, max_reduced: usize) -> Self {
        Backlog {
            items: VecDeque::new(),
            bytes: 0,
            reduced_held: 0,
            max_bytes,
            max_reduced,
            reduced: 0,
            lost: 0,
        }
    }

    /// Keeps a record (its line, or `reduced` when the lines are full).
    pub fn push(&mut self, line: Vec<u8>, reduced: Reduced) -> Kept {
        if self.bytes + line.len() <= self.max_bytes {
            self.bytes += line.len();
            self.items.push_back(Waiting::Line { id: reduced.id, line });
            Kept::Whole
        } else if self.reduced_held < self.max_reduced {
            self.reduced_held += 1;
            self.reduced += 1;
            self.items.push_back(Waiting::Reduced(reduced));
            Kept::Reduced
        } else {
            self.lost += 1;
            Kept::Lost
        }
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Records waiting.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Bytes of whole lines waiting.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Writes the waiting records oldest first until one fails (it stays first): how many
    /// were written, and the error if one failed.
    pub fn flush<E>(&mut self, mut write: impl FnMut(&Waiting) -> Result<(), E>) -> (usize, Result<(), E>) {
        let mut written = 0;
        while let Some(front) = self.items.front() {
            if let Err(e) = write(front) {
                return (written, Err(e));
            }
            match self.items.pop_front() {
                Some(Waiting::Line { line, .. }) => self.bytes -= line.len(),
                Some(Waiting::Reduced(_)) => self.reduced_held -= 1,
                None => {}
            }
            written += 1;
        }
        (written, Ok(()))
    }

    /// Records reduced and lost since the last call.
    pub fn take_counts(&mut self) -> (u64, u64) {
        (std::mem::take(&mut self.reduced), std::mem::take(&mut self.lost))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(id: u64) -> Reduced {
        Reduced { id, trigger: "gpio", triggered: SystemTime::UNIX_EPOCH, verdict: Verdict::Reject, fail_safe: true }
    }

    fn line(id: u64, len: usize) -> Vec<u8> {
        let mut l = format!("{{\"id\":{id}}}").into_bytes();
        l.resize(len - 1, b' ');
        l.push(b'\n');
        l
    }

    #[test]
    fn records_are_kept_whole_then_reduced_then_counted_as_lost() {
        let mut b = Backlog::new(100, 2);
        assert_eq!(b.push(line(1, 60), part(1)), Kept::Whole);
        assert_eq!(b.push(line(2, 40), part(2)), Kept::Whole);
        assert_eq!(b.bytes(), 100);
        assert_eq!(b.push(line(3, 10), part(3)), Kept::Reduced);
        assert_eq!(b.push(line(4, 10), part(4)), Kept::Reduced);
        assert_eq!(b.push(line(5, 10), part(5)), Kept::Lost);
        assert_eq!(b.len(), 4);
        assert_eq!(b.take_counts(), (2, 1));
        assert_eq!(b.take_counts(), (0, 0));
    }

    #[test]
    fn a_flush_writes_in_order_and_stops_at_the_first_failure() {
        let mut b = Backlog::new(1000, 10);
        for id in 1..=3 {
            b.push(line(id, 20), part(id));
        }
        b.push(line(4, 2000), part(4)); // too long: kept reduced
        let mut written = Vec::new();
        // The disk takes two records, then fails.
        let mut room = 2;
        let r = b.flush(|w| {
            if room == 0 {
                return Err("full");
            }
            room -= 1;
            written.push(w.id());
            Ok(())
        });
        assert_eq!(r, (2, Err("full")));
        assert_eq!(written, [1, 2]);
        assert_eq!((b.len(), b.bytes()), (2, 20));
        // Writing works again: the rest, oldest first, the reduced one as such.
        let mut rest = Vec::new();
        assert_eq!(b.flush(|w| -> Result<(), ()> {
            rest.push(matches!(w, Waiting::Reduced(_)));
            Ok(())
        }), (2, Ok(())));
        assert_eq!(rest, [false, true]);
        assert!(b.is_empty() && b.bytes() == 0);
        // Space for reduced records is given back too.
        let mut b = Backlog::new(0, 1);
        assert_eq!(b.push(line(1, 20), part(1)), Kept::Reduced);
        b.flush(|_| -> Result<(), ()> { Ok(()) }).1.unwrap();
        assert_eq!(b.push(line(2, 20), part(2)), Kept::Reduced);
    }
}
