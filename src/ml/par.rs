//! Deterministic data parallelism on a persistent pool: work is cut into pieces whose results do
//! not depend on which thread computed them (disjoint output slices, never a shared sum), so a fit
//! is bit-for-bit the same for any thread count.
//!
//! A boosting round makes dozens of parallel calls (one per histogram, partition and score
//! update), most of them a few hundred microseconds long: spawning threads on each would cost as
//! much as the work. So every thread that asks for parallel work owns a small pool of helper
//! threads, started on its first parallel call (they inherit its scheduling priority) and ended
//! with it. The calling thread works on its own batch too, so a nested call cannot wait on busy
//! helpers; a call made from inside a helper runs on that helper alone.

use std::cell::RefCell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use rand::Rng;
use rand_chacha::ChaCha12Rng;

/// Thread count for `threads` as configured: `None` = the cores this machine has.
pub fn resolve_threads(threads: Option<usize>) -> usize {
    threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1)
}

/// splitmix64 of (seed, i): independent, reproducible random streams per tree, fold or slice.
pub fn mix(seed: u64, i: u64) -> u64 {
    let mut z = seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Work below this many element updates runs on the calling thread: waking a parked helper and
/// waiting for it costs about as much as ~10⁴ histogram updates.
pub const MIN_PARALLEL_WORK: usize = 1 << 14;

/// How long an idle helper keeps polling for the next batch before it sleeps: the calls of a
/// boosting round come microseconds apart, and a wake-up from sleep costs more than that.
const SPIN: Duration = Duration::from_micros(50);

/// Polls between two readings of the clock while a helper spins (a poll is a load and a pause:
/// tens of nanoseconds).
const SPIN_CHECK: u32 = 64;

/// One parallel call: pieces `0..n` of `f`, claimed one at a time by whoever is free.
struct Batch {
    /// The caller's closure with its lifetime erased; see [`run`] for why that is sound.
    f: *const (dyn Fn(usize) + Sync),
    n: usize,
    next: AtomicUsize,
    done: AtomicUsize,
    /// Helpers that may still join: `threads − 1`, so a call never uses more threads than asked.
    seats: AtomicUsize,
    panicked: AtomicBool,
    caller: Thread,
}

// SAFETY: `f` points to a `Sync` closure, only called while its owner waits in `run`.
unsafe impl Send for Batch {}
// SAFETY: as above; every other field is thread-safe.
unsafe impl Sync for Batch {}

impl Batch {
    /// Claim and run pieces until none is left.
    fn work(&self) {
        loop {
            let i = self.next.fetch_add(1, Ordering::AcqRel);
            if i >= self.n {
                return;
            }
            // SAFETY: piece `i < n` was claimed here and is not counted done yet, so the caller
            // is still waiting in `run` and the closure it borrowed is alive.
            let f = unsafe { &*self.f };
            if catch_unwind(AssertUnwindSafe(|| f(i))).is_err() {
                self.panicked.store(true, Ordering::Release);
            }
            if self.done.fetch_add(1, Ordering::AcqRel) + 1 == self.n {
                self.caller.unpark();
            }
        }
    }
}

/// What a pool's helpers watch: the latest batch and a counter bumped with each new one.
struct Slot {
    batch: Option<Arc<Batch>>,
    shutdown: bool,
}

struct Shared {
    slot: Mutex<Slot>,
    wake: Condvar,
    generation: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Slot> {
        // A helper never panics while holding the lock (pieces run outside it).
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The helpers of one calling thread.
struct Pool {
    shared: Arc<Shared>,
    helpers: Vec<JoinHandle<()>>,
}

impl Pool {
    fn new() -> Pool {
        Pool {
            shared: Arc::new(Shared {
                slot: Mutex::new(Slot {
                    batch: None,
                    shutdown: false,
                }),
                wake: Condvar::new(),
                generation: AtomicU64::new(0),
            }),
            helpers: Vec::new(),
        }
    }

    /// Start helpers up to `n`; where the system refuses a thread, fewer (the caller does the
    /// rest of the work itself).
    fn grow_to(&mut self, n: usize) {
        while self.helpers.len() < n {
            let shared = Arc::clone(&self.shared);
            let spawned = std::thread::Builder::new()
                .name("ensemble-par".into())
                .spawn(move || helper(&shared));
            match spawned {
                Ok(h) => self.helpers.push(h),
                Err(_) => return,
            }
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.generation.fetch_add(1, Ordering::AcqRel);
        self.shared.wake.notify_all();
        for h in self.helpers.drain(..) {
            // A helper catches its pieces' panics; nothing is left to report here.
            let _ = h.join();
        }
    }
}

thread_local! {
    static POOL: RefCell<Option<Pool>> = const { RefCell::new(None) };
    static IS_HELPER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn helper(shared: &Shared) {
    IS_HELPER.with(|h| h.set(true));
    let mut seen = 0u64;
    loop {
        // Poll briefly, then sleep until the generation moves. The clock is read once per
        // SPIN_CHECK polls: reading it on every poll cost more than the polling.
        let start = Instant::now();
        let mut polls = 0u32;
        while shared.generation.load(Ordering::Acquire) == seen {
            polls = polls.wrapping_add(1);
            if polls.is_multiple_of(SPIN_CHECK) && start.elapsed() >= SPIN {
                break;
            }
            std::hint::spin_loop();
        }
        let batch = {
            let mut slot = shared.lock();
            while shared.generation.load(Ordering::Acquire) == seen && !slot.shutdown {
                slot = shared.wake.wait(slot).unwrap_or_else(|e| e.into_inner());
            }
            if slot.shutdown {
                return;
            }
            seen = shared.generation.load(Ordering::Acquire);
            slot.batch.clone()
        };
        if let Some(b) = batch {
            let seated = b
                .seats
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| s.checked_sub(1))
                .is_ok();
            if seated {
                b.work();
            }
        }
    }
}

/// Run `f(i)` for every `i` in `0..pieces` on up to `threads` threads (the caller's one of them),
/// returning when all are done. Which thread runs a piece is unspecified: `f` must write only
/// what piece `i` owns. A panic in any piece is raised again here, after every piece ended.
pub fn run(pieces: usize, threads: usize, f: impl Fn(usize) + Sync) {
    let threads = threads.min(pieces);
    if threads <= 1 || IS_HELPER.with(|h| h.get()) {
        (0..pieces).for_each(f);
        return;
    }
    let f: &(dyn Fn(usize) + Sync) = &f;
    // SAFETY: the lifetime is erased so helpers can hold the batch; they call `f` only for a
    // piece they claimed and that is not done, and this function returns only once every piece
    // is done (also when one panicked), so `f` outlives every call.
    let f: *const (dyn Fn(usize) + Sync) = unsafe {
        std::mem::transmute::<&(dyn Fn(usize) + Sync), &'static (dyn Fn(usize) + Sync)>(f)
    };
    let batch = Arc::new(Batch {
        f,
        n: pieces,
        next: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
        seats: AtomicUsize::new(threads - 1),
        panicked: AtomicBool::new(false),
        caller: std::thread::current(),
    });
    let posted = POOL.with(|p| {
        let Ok(mut p) = p.try_borrow_mut() else {
            return false;
        };
        let pool = p.get_or_insert_with(Pool::new);
        pool.grow_to(threads - 1);
        if pool.helpers.is_empty() {
            return false;
        }
        pool.shared.lock().batch = Some(Arc::clone(&batch));
        pool.shared.generation.fetch_add(1, Ordering::AcqRel);
        pool.shared.wake.notify_all();
        true
    });
    batch.work();
    if posted {
        while batch.done.load(Ordering::Acquire) < pieces {
            std::thread::park();
        }
    }
    if batch.panicked.load(Ordering::Acquire) {
        resume_unwind(Box::new("a parallel piece panicked"));
    }
}

/// Pieces a parallel call is cut into per thread: on a shared machine a thread can lose its core
/// in the middle of a call, and the others then take over its remaining pieces instead of waiting
/// for a whole share of the work.
const PIECES_PER_THREAD: usize = 4;

/// Apply `f` to every item, items cut into up to [`PIECES_PER_THREAD`] × `threads` contiguous
/// groups.
pub fn for_each<T: Send>(items: Vec<T>, threads: usize, f: impl Fn(T) + Sync) {
    let threads = threads.clamp(1, items.len().max(1));
    if threads == 1 {
        items.into_iter().for_each(f);
        return;
    }
    let n_groups = (threads * PIECES_PER_THREAD).min(items.len());
    let per = items.len().div_ceil(n_groups);
    let mut groups: Vec<Mutex<Vec<T>>> = Vec::with_capacity(n_groups);
    let mut it = items.into_iter().peekable();
    while it.peek().is_some() {
        groups.push(Mutex::new(it.by_ref().take(per).collect()));
    }
    run(groups.len(), threads, |g| {
        let items = std::mem::take(&mut *groups[g].lock().unwrap_or_else(|e| e.into_inner()));
        items.into_iter().for_each(&f);
    });
}

/// Run `f(start_index, chunk)` over `data` cut into chunks of whole records of `width` elements
/// each, on up to `threads` threads.
pub fn chunks_mut<T: Send>(
    data: &mut [T],
    width: usize,
    threads: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    let records = data.len() / width.max(1);
    let threads = if data.len() < MIN_PARALLEL_WORK {
        1
    } else {
        threads
    };
    let pieces = if threads > 1 {
        threads * PIECES_PER_THREAD
    } else {
        1
    };
    let per = records.div_ceil(pieces).max(1) * width.max(1);
    let pieces: Vec<(usize, &mut [T])> = data
        .chunks_mut(per)
        .enumerate()
        .map(|(i, c)| (i * per / width.max(1), c))
        .collect();
    for_each(pieces, threads, |(start, c)| f(start, c));
}

/// Fill `out` with the next `out.len()` words of `rng`, exactly as `rng.fill(out)` would (and
/// leave `rng` where that would), the pieces drawn on up to `threads` threads: each enters the
/// ChaCha stream at its own word.
pub fn fill_words(rng: &mut ChaCha12Rng, out: &mut [u32], threads: usize) {
    let start = rng.get_word_pos();
    let from = rng.clone();
    chunks_mut(out, 1, threads, |at, piece| {
        let mut r = from.clone();
        r.set_word_pos(start + at as u128);
        r.fill(piece);
    });
    rng.set_word_pos(start + out.len() as u128);
}

/// Elements a stable split hands each piece at least: below twice that, one thread does it.
const SPLIT_PIECE: usize = 1 << 13;

/// Reorder `seg` stably: elements `x` at index `i` with `keep(i, x)` first, in their order, then
/// the others in theirs; returns how many were kept. `scratch` is working space. Threads take
/// contiguous pieces and the pieces are put together in order, so the outcome is that of one
/// pass for any thread count.
pub fn split_stable<T: Copy + Default + Send + Sync>(
    seg: &mut [T],
    scratch: &mut Vec<T>,
    threads: usize,
    keep: impl Fn(usize, T) -> bool + Sync,
) -> usize {
    if scratch.len() < seg.len() {
        scratch.resize(seg.len(), T::default());
    }
    let scratch = &mut scratch[..seg.len()];
    let pieces = (threads * PIECES_PER_THREAD).min(seg.len() / SPLIT_PIECE);
    if threads <= 1 || pieces <= 1 {
        let o = split_piece(seg, scratch, 0, &keep);
        let w = seg.len() - o;
        seg[w..].copy_from_slice(&scratch[..o]);
        return w;
    }
    let per = seg.len().div_ceil(pieces);
    let mut counts = vec![(0usize, 0usize); seg.len().div_ceil(per)];
    let pieces: Vec<_> = seg
        .chunks_mut(per)
        .zip(scratch.chunks_mut(per))
        .zip(counts.iter_mut())
        .enumerate()
        .collect();
    for_each(pieces, threads, |(i, ((s, t), c))| {
        let o = split_piece(s, t, i * per, &keep);
        *c = (s.len() - o, o);
    });
    // Kept runs slide down to their places (never past a later run), then the others follow.
    let mut w = 0;
    for (i, &(l, _)) in counts.iter().enumerate() {
        seg.copy_within(i * per..i * per + l, w);
        w += l;
    }
    let mut at = w;
    for (i, &(_, o)) in counts.iter().enumerate() {
        seg[at..at + o].copy_from_slice(&scratch[i * per..i * per + o]);
        at += o;
    }
    w
}

/// One piece of [`split_stable`] starting at index `base`: kept elements to the front of `seg`,
/// the others to the front of `scratch`; returns how many went to `scratch`. Branch-free (every
/// element is written to both sides, the cursor of its side moves): whether an element is kept
/// is data, and a branch on it would be mispredicted all the time.
fn split_piece<T: Copy>(
    seg: &mut [T],
    scratch: &mut [T],
    base: usize,
    keep: &impl Fn(usize, T) -> bool,
) -> usize {
    let (mut w, mut o) = (0, 0);
    for j in 0..seg.len() {
        let x = seg[j];
        let k = keep(base + j, x);
        seg[w] = x;
        scratch[o] = x;
        w += k as usize;
        o += !k as usize;
    }
    o
}

/// Map `f` over `0..n` on up to `threads` threads, results in index order.
pub fn map<R: Send>(n: usize, threads: usize, f: impl Fn(usize) -> R + Sync) -> Vec<R> {
    let mut out: Vec<Option<R>> = (0..n).map(|_| None).collect();
    let slots: Vec<(usize, &mut Option<R>)> = out.iter_mut().enumerate().collect();
    for_each(slots, threads, |(i, slot)| *slot = Some(f(i)));
    out.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_keeps_order_for_any_thread_count() {
        for t in 1..5 {
            assert_eq!(map(7, t, |i| i * i), vec![0, 1, 4, 9, 16, 25, 36]);
        }
    }

    #[test]
    fn words_drawn_on_threads_are_the_stream_one_thread_draws() {
        use rand::{RngCore, SeedableRng};
        for (t, n, skip) in [
            (1, 100_000, 0),
            (2, 100_000, 3),
            (3, 70_001, 17),
            (4, 20_000, 1),
        ] {
            let mut one = ChaCha12Rng::seed_from_u64(9);
            let mut many = one.clone();
            for _ in 0..skip {
                one.next_u32();
                many.next_u32();
            }
            let (mut a, mut b) = (vec![0u32; n], vec![0u32; n]);
            one.fill(&mut a[..]);
            fill_words(&mut many, &mut b, t);
            assert!(a == b, "{t} threads, {n} words after {skip}");
            assert_eq!(one.next_u64(), many.next_u64(), "the stream goes on alike");
        }
        // The boosting run's stream was `StdRng`: the same ChaCha, the same fits.
        let mut std = rand::rngs::StdRng::seed_from_u64(42);
        let mut chacha = ChaCha12Rng::seed_from_u64(42);
        for _ in 0..1000 {
            assert_eq!(std.next_u32(), chacha.next_u32());
        }
    }

    #[test]
    fn chunks_cover_every_record_once() {
        for t in 1..4 {
            let mut v = vec![0usize; 3 * 200_001];
            chunks_mut(&mut v, 3, t, |start, c| {
                for (j, rec) in c.chunks_mut(3).enumerate() {
                    rec.iter_mut().for_each(|x| *x += start + j);
                }
            });
            assert!(v.chunks(3).enumerate().all(|(i, r)| r == [i, i, i]));
        }
    }

    #[test]
    fn run_does_every_piece_once_on_at_most_the_threads_asked() {
        use std::collections::HashSet;
        for t in 1..5 {
            // Many calls in a row reuse the same helpers: each call still sees every piece once.
            for _ in 0..200 {
                let hits: Vec<AtomicUsize> = (0..37).map(|_| AtomicUsize::new(0)).collect();
                let who = Mutex::new(HashSet::new());
                run(hits.len(), t, |i| {
                    hits[i].fetch_add(1, Ordering::Relaxed);
                    who.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(std::thread::current().id());
                });
                assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
                assert!(who.into_inner().unwrap_or_else(|e| e.into_inner()).len() <= t);
            }
        }
    }

    #[test]
    fn split_is_stable_and_the_same_for_any_thread_count() {
        let v: Vec<u32> = (0..300_000u32)
            .map(|i| i.wrapping_mul(2_654_435_761) % 1000)
            .collect();
        let keep = |i: usize, x: u32| x < 300 || i.is_multiple_of(7);
        let kept: Vec<u32> = (0..v.len())
            .filter(|&i| keep(i, v[i]))
            .map(|i| v[i])
            .collect();
        let other: Vec<u32> = (0..v.len())
            .filter(|&i| !keep(i, v[i]))
            .map(|i| v[i])
            .collect();
        for t in 1..5 {
            let mut seg = v.clone();
            let w = split_stable(&mut seg, &mut Vec::new(), t, keep);
            assert_eq!(w, kept.len());
            assert_eq!(&seg[..w], &kept[..], "{t} threads");
            assert_eq!(&seg[w..], &other[..], "{t} threads");
        }
    }

    #[test]
    fn nested_calls_finish() {
        let total = AtomicUsize::new(0);
        run(4, 2, |_| {
            run(5, 2, |j| {
                total.fetch_add(j, Ordering::Relaxed);
            })
        });
        assert_eq!(total.load(Ordering::Relaxed), 4 * 10);
    }

    #[test]
    fn a_panicking_piece_is_raised_after_every_piece_ended() {
        let ended = AtomicUsize::new(0);
        let r = catch_unwind(AssertUnwindSafe(|| {
            run(8, 2, |i| {
                if i == 3 {
                    panic!("piece 3");
                }
                ended.fetch_add(1, Ordering::Relaxed);
            })
        }));
        assert!(r.is_err());
        assert_eq!(ended.load(Ordering::Relaxed), 7);
        // The pool still works afterwards.
        assert_eq!(map(3, 2, |i| i + 1), vec![1, 2, 3]);
    }
}
