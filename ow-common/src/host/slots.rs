//! Instance slots: the bound on activations that hold an instance at once. An activation
//! beyond it waits for a slot until its deadline instead of failing; the count of waiting
//! activations is kept for operators. A held slot also counts its instance in flight, so that
//! the end of a burst returns the allocator's free memory (see `heap`).

use super::heap::InstanceInFlight;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The engine's instance slots, shared by every action it prepared.
#[derive(Debug, Clone)]
pub struct InstanceSlots {
    semaphore: Arc<Semaphore>,
    total: usize,
    waiting: Arc<AtomicUsize>,
}

/// One held slot: the instance it stands for may exist until this is dropped.
#[derive(Debug)]
pub struct InstanceSlot {
    _permit: OwnedSemaphorePermit,
    _in_flight: InstanceInFlight,
}

impl InstanceSlot {
    fn new(permit: OwnedSemaphorePermit) -> Self {
        Self {
            _permit: permit,
            _in_flight: InstanceInFlight::start(),
        }
    }
}

impl InstanceSlots {
    /// `total` slots, all free.
    pub fn new(total: usize) -> Self {
        Self {
            semaphore: Arc::new(Semaphore::new(total)),
            total,
            waiting: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Takes a slot, waiting for one until `deadline`; `None` when the deadline came first.
    pub async fn acquire_until(&self, deadline: Instant) -> Option<InstanceSlot> {
        if let Ok(permit) = self.semaphore.clone().try_acquire_owned() {
            return Some(InstanceSlot::new(permit));
        }
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let _waiting = DecrementOnDrop(&self.waiting);
        let acquired =
            tokio::time::timeout_at(deadline.into(), self.semaphore.clone().acquire_owned()).await;
        match acquired {
            // The semaphore is never closed.
            Ok(permit) => Some(InstanceSlot::new(
                permit.expect("instance slots are never closed"),
            )),
            Err(_elapsed) => None,
        }
    }

    /// How many slots there are.
    pub fn total(&self) -> usize {
        self.total
    }

    /// How many slots are held right now.
    pub fn in_use(&self) -> usize {
        self.total - self.semaphore.available_permits()
    }

    /// How many activations are waiting for a slot right now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }
}

struct DecrementOnDrop<'a>(&'a AtomicUsize);

impl Drop for DecrementOnDrop<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_slot_is_free_again_when_dropped_and_waiters_give_up_at_their_deadline() {
        let slots = InstanceSlots::new(1);
        let held = slots
            .acquire_until(Instant::now())
            .await
            .expect("a free slot");
        assert_eq!((slots.in_use(), slots.waiting()), (1, 0));
        // The deadline is already past: no wait.
        assert!(slots.acquire_until(Instant::now()).await.is_none());
        let waiter = tokio::spawn({
            let slots = slots.clone();
            async move {
                slots
                    .acquire_until(Instant::now() + Duration::from_secs(60))
                    .await
                    .is_some()
            }
        });
        while slots.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        drop(held);
        assert!(waiter.await.unwrap(), "the waiter got the freed slot");
        assert_eq!((slots.in_use(), slots.waiting(), slots.total()), (0, 0, 1));
    }
}
