//! Deterministic data parallelism on `std::thread::scope`: work is cut into pieces whose results
//! do not depend on which thread computed them (disjoint output slices, never a shared sum), so a
//! fit is bit-for-bit the same for any thread count.

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

/// Work below this many element updates runs on the calling thread: a spawn costs about as much
/// as ~10⁵ histogram updates.
pub const MIN_PARALLEL_WORK: usize = 1 << 17;

/// Apply `f` to every item, items cut into `threads` contiguous groups, the first group on the
/// calling thread.
pub fn for_each<T: Send>(items: Vec<T>, threads: usize, f: impl Fn(T) + Sync) {
    let threads = threads.clamp(1, items.len().max(1));
    if threads == 1 {
        items.into_iter().for_each(f);
        return;
    }
    let per = items.len().div_ceil(threads);
    let mut groups: Vec<Vec<T>> = Vec::with_capacity(threads);
    let mut it = items.into_iter().peekable();
    while it.peek().is_some() {
        groups.push(it.by_ref().take(per).collect());
    }
    let f = &f;
    std::thread::scope(|s| {
        let mut groups = groups.into_iter();
        let first = groups.next();
        for g in groups {
            s.spawn(move || g.into_iter().for_each(f));
        }
        if let Some(g) = first {
            g.into_iter().for_each(f);
        }
    });
}

/// Run `f(start_index, chunk)` over `data` cut into at most `threads` chunks of whole records of
/// `width` elements each.
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
    let per = records.div_ceil(threads.max(1)).max(1) * width.max(1);
    let pieces: Vec<(usize, &mut [T])> = data
        .chunks_mut(per)
        .enumerate()
        .map(|(i, c)| (i * per / width.max(1), c))
        .collect();
    for_each(pieces, threads, |(start, c)| f(start, c));
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
}
