//! Numbers sorted in [`f64::total_cmp`] order, by a radix sort of their bits when there are many
//! (bin edges, drift quantiles: columns of hundreds of thousands of values, sorted whole).

/// Below this many values a comparison sort is as fast.
const RADIX_FROM: usize = 2_048;

/// `x`'s bits as an unsigned key that orders as [`f64::total_cmp`] does: negative numbers with
/// every bit flipped (a larger magnitude is smaller), the others with the sign bit set.
#[inline]
fn key(x: f64) -> u64 {
    let b = x.to_bits();
    if b >> 63 == 1 {
        !b
    } else {
        b | 1 << 63
    }
}

#[inline]
fn number(k: u64) -> f64 {
    f64::from_bits(if k >> 63 == 1 { k & !(1 << 63) } else { !k })
}

/// Sort `v` in [`f64::total_cmp`] order (the same result as `v.sort_unstable_by(f64::total_cmp)`):
/// an LSD radix sort over the key's bytes, skipping a byte every value shares (the high bytes of
/// a column's values often are).
pub fn sort_total(v: &mut [f64]) {
    let n = v.len();
    if n < RADIX_FROM {
        v.sort_unstable_by(f64::total_cmp);
        return;
    }
    let mut keys: Vec<u64> = v.iter().map(|&x| key(x)).collect();
    let mut counts = [[0usize; 256]; 8];
    for &k in &keys {
        for (d, c) in counts.iter_mut().enumerate() {
            c[(k >> (8 * d)) as usize & 0xFF] += 1;
        }
    }
    let mut other = vec![0u64; n];
    let (mut from, mut to) = (&mut keys, &mut other);
    for (d, c) in counts.iter().enumerate() {
        if c.contains(&n) {
            continue;
        }
        let mut at = [0usize; 256];
        let mut sum = 0;
        for (a, &c) in at.iter_mut().zip(c) {
            *a = sum;
            sum += c;
        }
        for &k in from.iter() {
            let b = (k >> (8 * d)) as usize & 0xFF;
            to[at[b]] = k;
            at[b] += 1;
        }
        std::mem::swap(&mut from, &mut to);
    }
    for (x, &k) in v.iter_mut().zip(from.iter()) {
        *x = number(k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn radix_order_is_total_cmp_order() {
        let specials = [
            f64::NAN,
            -f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            0.0,
            -0.0,
            f64::MIN_POSITIVE,
            -f64::MIN_POSITIVE,
            5e-324,
            f64::MAX,
            f64::MIN,
        ];
        for n in [0usize, 1, 100, RADIX_FROM, 50_000] {
            let v: Vec<f64> = (0..n)
                .map(|i| match i % 13 {
                    0..=10 if i % 7 == 0 => specials[i % 11],
                    11 => (i % 17) as f64,
                    _ => ((i as f64) * 0.618_033_988_7).sin() * 10f64.powi((i % 9) as i32 - 4),
                })
                .collect();
            let mut want = v.clone();
            want.sort_unstable_by(f64::total_cmp);
            let mut got = v;
            sort_total(&mut got);
            let bits = |s: &[f64]| s.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "n = {n}");
        }
    }

    #[test]
    fn keys_round_trip() {
        for x in [1.5, -1.5, 0.0, -0.0, f64::NAN, -f64::INFINITY] {
            assert_eq!(number(key(x)).to_bits(), x.to_bits());
        }
    }
}
