//! Live delivery: one broadcast channel per recipient with at least one
//! subscriber, so publishing costs nothing for inboxes nobody watches.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// A newly accepted message, already rendered as the JSON a subscriber gets.
#[derive(Debug)]
pub struct InboxEvent {
    pub seq: u64,
    pub json: String,
}

pub struct Hub {
    channels: Mutex<HashMap<String, broadcast::Sender<Arc<InboxEvent>>>>,
    /// Events a slow subscriber may fall behind by before it is told it lagged.
    capacity: usize,
}

impl Hub {
    pub fn new(capacity: usize) -> Self {
        Hub {
            channels: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    pub fn subscribe(&self, recipient: &str) -> broadcast::Receiver<Arc<InboxEvent>> {
        let mut ch = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        ch.entry(recipient.to_string())
            .or_insert_with(|| broadcast::channel(self.capacity).0)
            .subscribe()
    }

    /// Sends the event made by `make` to the recipient's subscribers; `make`
    /// runs only when there is one, so unwatched inboxes cost a map lookup.
    pub fn publish(&self, recipient: &str, make: impl FnOnce() -> InboxEvent) {
        let mut ch = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = ch.get(recipient) {
            if tx.receiver_count() == 0 || tx.send(Arc::new(make())).is_err() {
                ch.remove(recipient);
            }
        }
    }

    pub fn subscriber_channels(&self) -> usize {
        self.channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }
}
