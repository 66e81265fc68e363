//! The recent scans' messages, so the UI can learn one as spam or ham, or
//! report it to a fuzzy list, from its history entry, as an admin expects
//! after finding it there. Memory only (a restart forgets them) and bounded
//! twice: no more than the history holds, and no more than
//! `[server] history_messages_mb` of message bytes; the oldest go first.

use std::collections::VecDeque;
use std::sync::Arc;

use chaff::message::Envelope;

/// One scanned message as it came in.
pub struct KeptMessage {
    pub raw: Vec<u8>,
    pub envelope: Envelope,
}

#[derive(Default)]
pub struct Kept {
    messages: VecDeque<(u64, Arc<KeptMessage>)>,
    bytes: usize,
}

impl Kept {
    /// Keeps `message` under history id `id` within `max_count` messages
    /// and `max_bytes` bytes.
    pub fn keep(&mut self, id: u64, message: KeptMessage, max_count: usize, max_bytes: usize) {
        if message.raw.len() > max_bytes || max_count == 0 {
            return;
        }
        self.bytes += message.raw.len();
        // Scans finish in any order; the deque stays sorted by id (an id
        // is handed out before the scan's message arrives here).
        let at = self
            .messages
            .iter()
            .rposition(|(kept, _)| *kept < id)
            .map_or(0, |i| i + 1);
        self.messages.insert(at, (id, Arc::new(message)));
        while self.messages.len() > max_count || self.bytes > max_bytes {
            match self.messages.pop_front() {
                Some((_, old)) => self.bytes -= old.raw.len(),
                None => break,
            }
        }
    }

    pub fn get(&self, id: u64) -> Option<Arc<KeptMessage>> {
        // Ids grow with time, so the deque is sorted by them.
        let at = self
            .messages
            .binary_search_by_key(&id, |(kept, _)| *kept)
            .ok()?;
        self.messages.get(at).map(|(_, message)| message.clone())
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(len: usize) -> KeptMessage {
        KeptMessage {
            raw: vec![b'x'; len],
            envelope: Envelope::default(),
        }
    }

    #[test]
    fn the_oldest_go_past_either_bound() {
        let mut kept = Kept::default();
        for id in 1..=5 {
            kept.keep(id, message(10), 3, 1000);
        }
        assert!(kept.get(2).is_none());
        assert!(kept.get(3).is_some() && kept.get(5).is_some());
        kept.keep(6, message(25), 3, 40);
        assert!(kept.get(4).is_none() && kept.get(5).is_some() && kept.get(6).is_some());
        assert_eq!(kept.bytes(), 35);
        kept.keep(7, message(41), 3, 40);
        assert!(kept.get(7).is_none());
    }

    #[test]
    fn messages_kept_out_of_order_are_still_found() {
        let mut kept = Kept::default();
        for id in [2, 1, 4, 3, 6, 5] {
            kept.keep(id, message(1), 10, 100);
        }
        assert!((1..=6).all(|id| kept.get(id).is_some()));
    }
}
