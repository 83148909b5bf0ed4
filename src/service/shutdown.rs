//! One shutdown type for every background task, as in mini-redis: a task holds a [`Shutdown`],
//! sleeps with [`Shutdown::sleep`] (which returns early when told to stop) and returns when it is
//! told. [`Stages`] tells the tasks in two steps, so the service stops in order: producers first
//! (the minute loop, the database supervisor, the bucket sweeper), and, once they have been
//! joined, the history writer, which then drains everything they submitted.

use std::time::Duration;

use tokio::sync::watch;

/// A task's view of the shutdown signal.
#[derive(Clone, Debug)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

impl Shutdown {
    /// True once the signal has been sent.
    pub fn is_shutdown(&self) -> bool {
        *self.rx.borrow()
    }

    /// Waits for the signal (at once if it was already sent).
    pub async fn recv(&mut self) {
        // An error means the sender is gone, which is a shutdown too.
        let _ = self.rx.wait_for(|stop| *stop).await;
    }

    /// Sleeps for `period`; false when shutdown came first (the caller should return).
    pub async fn sleep(&mut self, period: Duration) -> bool {
        self.sleep_until(tokio::time::Instant::now() + period).await
    }

    /// Sleeps until `deadline`; false when shutdown came first.
    pub async fn sleep_until(&mut self, deadline: tokio::time::Instant) -> bool {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => !self.is_shutdown(),
            _ = self.recv() => false,
        }
    }
}

/// One stage's sending side: its tasks stop when it is triggered.
#[derive(Debug)]
pub struct Trigger {
    tx: watch::Sender<bool>,
}

impl Trigger {
    pub fn new() -> Trigger {
        Trigger {
            tx: watch::channel(false).0,
        }
    }

    /// A receiver for one task of this stage.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown {
            rx: self.tx.subscribe(),
        }
    }

    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }
}

impl Default for Trigger {
    fn default() -> Self {
        Trigger::new()
    }
}

/// The service's two shutdown stages.
#[derive(Debug, Default)]
pub struct Stages {
    /// Everything that produces work for another task, or serves: stops first.
    pub producers: Trigger,
    /// The history writer: told only after every producer has been joined.
    pub writers: Trigger,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sleep_returns_false_once_told_and_true_otherwise() {
        let trigger = Trigger::new();
        let mut task = trigger.subscribe();
        assert!(
            task.sleep(Duration::from_millis(5)).await,
            "no signal: slept"
        );
        let sleeping = tokio::spawn(async move {
            let woke = task.sleep(Duration::from_secs(3600)).await;
            (woke, task.is_shutdown())
        });
        tokio::task::yield_now().await;
        trigger.trigger();
        assert_eq!(
            sleeping.await.unwrap(),
            (false, true),
            "told: returns early"
        );
        let mut late = trigger.subscribe();
        assert!(
            !late.sleep(Duration::from_secs(1)).await,
            "subscribed after the signal"
        );
    }
}
