//! Waiting for many futures at once, their outputs in the order given.
//!
//! `futures::future::join_all` of fewer than 30 futures polls every one of them each time any
//! is woken: a one-row prediction across 16 members, whose answers arrive one by one, costs
//! 16 × 16 polls of timers and channels per layer. [`join_in_order`] polls only the futures
//! that were woken.

use std::future::Future;

use futures::stream::{FuturesUnordered, StreamExt};

/// Runs `futures` concurrently and returns their outputs in the order given. They are first
/// polled in that order too, as `join_all` does (a flow that queues the other nodes' requests
/// before its own relies on it).
pub async fn join_in_order<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut running: FuturesUnordered<_> = futures
        .into_iter()
        .enumerate()
        .map(|(i, f)| async move { (i, f.await) })
        .collect();
    let mut out: Vec<Option<F::Output>> = (0..running.len()).map(|_| None).collect();
    while let Some((i, output)) = running.next().await {
        out[i] = Some(output);
    }
    out.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::time::Duration;

    use super::*;

    #[actix_rt::test]
    async fn outputs_keep_the_order_given_and_first_polls_follow_it() {
        let started = RefCell::new(Vec::new());
        let delays = [30u64, 0, 20, 10];
        let out = join_in_order(delays.iter().enumerate().map(|(i, &ms)| {
            let started = &started;
            async move {
                started.borrow_mut().push(i);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                i * 10
            }
        }))
        .await;
        assert_eq!(out, [0, 10, 20, 30]);
        assert_eq!(*started.borrow(), [0, 1, 2, 3]);
        let none: Vec<u8> = join_in_order(Vec::<std::future::Ready<u8>>::new()).await;
        assert!(none.is_empty());
    }
}
