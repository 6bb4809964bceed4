//! What the node's supervised actors share: a restart budget, restart counts, and the rule that
//! a failure inside a handler becomes a stop-and-restart instead of a dead actor.
//!
//! actix's `Supervisor` restarts an actor that stops (calling `Supervised::restarting` on the same
//! value, which rebuilds what must be rebuilt), but a panic that escapes a handler kills the actor
//! for good, and a caller waiting for its answer hears nothing. So every handler of a long-lived
//! actor runs under [`guard`], and every future it hands back under [`Guarded`]: a panic is logged,
//! the waiting caller gets the fallback answer, and the actor stops, so its supervisor restarts it.
//! Every restart draws on one node-wide [`RestartBudget`]: past it, the node exits with
//! [`EXIT_TOO_MANY_RESTARTS`] rather than restart in a loop.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use actix::fut::{self, ActorFutureExt};
use actix::{Actor, ActorContext, ActorFuture, AsyncContext, Context, ResponseActFuture, System};

use serde::Serialize;

use crate::cluster::RestartBudget;

/// Exit code of a node stopped because its actors kept failing.
pub const EXIT_TOO_MANY_RESTARTS: i32 = 3;

/// Supervisor restarts per kind of actor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Restarts {
    pub cluster: u64,
    pub model: u64,
    pub watcher: u64,
    pub peer: u64,
}

/// The kinds of supervised actor, for the restart counts in `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Cluster,
    Model,
    Watcher,
    Peer,
}

struct Shared {
    budget: RestartBudget,
    counts: Restarts,
}

/// The node-wide restart budget (5 restarts in 10 s) and counts. Cloning shares them.
#[derive(Clone)]
pub struct Supervision(Arc<Mutex<Shared>>);

impl Default for Supervision {
    fn default() -> Self {
        Supervision(Arc::new(Mutex::new(Shared {
            budget: RestartBudget::new(5, Duration::from_secs(10)),
            counts: Restarts::default(),
        })))
    }
}

impl Supervision {
    /// Records a restart of `actor`; stops the node when the budget is exhausted.
    pub fn restarting(&self, kind: Kind, actor: &str) {
        let allowed = {
            let mut shared = self.0.lock().unwrap_or_else(|e| e.into_inner());
            let c = &mut shared.counts;
            match kind {
                Kind::Cluster => c.cluster += 1,
                Kind::Model => c.model += 1,
                Kind::Watcher => c.watcher += 1,
                Kind::Peer => c.peer += 1,
            }
            shared.budget.allow(Instant::now())
        };
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

    /// Restarts so far, per kind of actor.
    pub fn counts(&self) -> Restarts {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).counts
    }
}

/// The message of a panic payload.
pub fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}

/// Runs a handler body; if it panics, logs why and stops the actor so that its supervisor
/// restarts it. `None` tells the handler to answer its caller with an error.
pub fn guard<A, R>(
    act: &mut A,
    ctx: &mut A::Context,
    what: &str,
    body: impl FnOnce(&mut A, &mut A::Context) -> R,
) -> Option<R>
where
    A: Actor,
    A::Context: ActorContext,
{
    match std::panic::catch_unwind(AssertUnwindSafe(|| body(act, ctx))) {
        Ok(r) => Some(r),
        Err(panic) => {
            tracing::error!("{what} panicked: {}", panic_message(panic.as_ref()));
            ctx.stop();
            None
        }
    }
}

/// Runs a handler that answers with a future, under [`guard`]'s rule: a panic while building the
/// answer or while its future runs answers the caller with `fallback(panic message)` and then
/// stops the actor. (Stopping first would drop the answer with the actor's pending futures.)
pub fn guard_response<A, O>(
    act: &mut A,
    ctx: &mut Context<A>,
    what: &'static str,
    body: impl FnOnce(&mut A, &mut Context<A>) -> ResponseActFuture<A, O>,
    fallback: impl FnOnce(String) -> O + 'static,
) -> ResponseActFuture<A, O>
where
    A: Actor<Context = Context<A>>,
    O: 'static,
{
    match std::panic::catch_unwind(AssertUnwindSafe(|| body(act, ctx))) {
        Ok(work) => Box::pin(Guarded::new(work, what, fallback)),
        Err(panic) => {
            let msg = panic_message(panic.as_ref());
            tracing::error!("{what} panicked: {msg}");
            Box::pin(fut::ready(()).map(move |_, _act, ctx: &mut Context<A>| {
                ctx.stop();
                fallback(msg)
            }))
        }
    }
}

/// A future run by an actor, polled under [`guard`]'s rule: a panic while polling it stops the
/// actor and resolves the future with `fallback(panic message)`, so whoever awaits the answer
/// gets one.
pub struct Guarded<A: Actor, O> {
    inner: Pin<Box<dyn ActorFuture<A, Output = O>>>,
    what: &'static str,
    fallback: Option<Box<dyn FnOnce(String) -> O>>,
}

impl<A: Actor, O> Guarded<A, O> {
    pub fn new(
        inner: impl ActorFuture<A, Output = O> + 'static,
        what: &'static str,
        fallback: impl FnOnce(String) -> O + 'static,
    ) -> Self {
        Guarded {
            inner: Box::pin(inner),
            what,
            fallback: Some(Box::new(fallback)),
        }
    }
}

impl<A, O> ActorFuture<A> for Guarded<A, O>
where
    A: Actor,
    A::Context: ActorContext + AsyncContext<A>,
{
    type Output = O;

    fn poll(
        self: Pin<&mut Self>,
        act: &mut A,
        ctx: &mut A::Context,
        task: &mut TaskContext<'_>,
    ) -> Poll<O> {
        let this = self.get_mut();
        let inner = &mut this.inner;
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.as_mut().poll(act, ctx, task))) {
            Ok(poll) => poll,
            Err(panic) => {
                let msg = panic_message(panic.as_ref());
                tracing::error!("{} panicked: {msg}", this.what);
                ctx.stop();
                match this.fallback.take() {
                    Some(fallback) => Poll::Ready(fallback(msg)),
                    // Polled again after it failed: it never completes.
                    None => Poll::Pending,
                }
            }
        }
    }
}

/// The failure `fault` injects (only with `[testing] faults = true`).
pub fn injected_fault() {
    panic!("injected fault");
}
