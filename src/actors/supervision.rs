//! What the node's supervised actors share: a restart budget, and the rule that a failure inside
//! a handler becomes a stop-and-restart instead of a dead actor.
//!
//! actix's `Supervisor` restarts an actor that stops (calling `Supervised::restarting` on the same
//! value, which rebuilds what must be rebuilt), but a panic that escapes a handler kills the actor
//! for good. So risky work runs under [`contain`], and every restart draws on one node-wide
//! [`RestartBudget`]: past it, the node exits cleanly rather than restart in a loop.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::{ActorContext, System};

use crate::cluster::RestartBudget;

/// Exit code of a node stopped because its actors kept failing.
pub const EXIT_TOO_MANY_RESTARTS: i32 = 3;

/// The node-wide restart budget (5 restarts in 10 s by default).
#[derive(Clone)]
pub struct Supervision(Arc<Mutex<RestartBudget>>);

impl Default for Supervision {
    fn default() -> Self {
        Supervision(Arc::new(Mutex::new(RestartBudget::new(
            5,
            Duration::from_secs(10),
        ))))
    }
}

impl Supervision {
    /// Records a restart of `actor`; stops the node when the budget is exhausted.
    pub fn restarting(&self, actor: &str) {
        let allowed = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .allow(Instant::now());
        if allowed {
            tracing::warn!("{actor} actor restarting");
        } else {
            tracing::error!(
                actor,
                "too many restarts in a short time; stopping the node"
            );
            System::current().stop_with_code(EXIT_TOO_MANY_RESTARTS);
        }
    }
}

/// Runs `work`; if it panics, logs why and stops the actor so that its supervisor restarts it.
pub fn contain<C: ActorContext, R>(ctx: &mut C, what: &str, work: impl FnOnce() -> R) -> Option<R> {
    match std::panic::catch_unwind(AssertUnwindSafe(work)) {
        Ok(r) => Some(r),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            tracing::error!("{what} failed: {msg}");
            ctx.stop();
            None
        }
    }
}

/// The failure `fault` injects (only with `[testing] faults = true`).
pub fn injected_fault() {
    panic!("injected fault");
}
