//! Latency samples and their percentiles. Every sample is kept (a run is at most a few hundred
//! thousand requests), so percentiles are exact rather than estimated from buckets.
//!
//! Not here: timing itself (the callers decide what a latency is measured from).

use std::time::Duration;

/// Latency samples in microseconds, sorted once on construction.
#[derive(Debug, Clone, Default)]
pub struct Latencies {
    sorted_us: Vec<u64>,
}

impl Latencies {
    pub fn from_micros(mut samples: Vec<u64>) -> Latencies {
        samples.sort_unstable();
        Latencies { sorted_us: samples }
    }

    pub fn count(&self) -> usize {
        self.sorted_us.len()
    }

    /// Nearest-rank percentile (`q` in 0..=1): the smallest sample with at least `q` of all
    /// samples at or below it. 0 when there are no samples.
    pub fn percentile_us(&self, q: f64) -> u64 {
        let n = self.sorted_us.len();
        if n == 0 {
            return 0;
        }
        let rank = (q.clamp(0.0, 1.0) * n as f64).ceil() as usize;
        self.sorted_us[rank.clamp(1, n) - 1]
    }

    pub fn max_us(&self) -> u64 {
        self.sorted_us.last().copied().unwrap_or(0)
    }
}

/// Whole microseconds, saturating; a `Duration` can be longer than a u64 of µs only in theory.
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The median of a small set of run times (start-up runs), in milliseconds.
pub fn median_ms(samples: &[Duration]) -> f64 {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    match ms.len() {
        0 => 0.0,
        n if n % 2 == 1 => ms[n / 2],
        n => (ms[n / 2 - 1] + ms[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let l = Latencies::from_micros((1..=100).rev().collect());
        assert_eq!(l.percentile_us(0.5), 50);
        assert_eq!(l.percentile_us(0.99), 99);
        assert_eq!(l.percentile_us(1.0), 100);
        assert_eq!(l.percentile_us(0.0), 1);
        assert_eq!(l.max_us(), 100);
        assert_eq!(Latencies::default().percentile_us(0.99), 0);
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        let ms = |v: &[u64]| v.iter().map(|m| Duration::from_millis(*m)).collect::<Vec<_>>();
        assert_eq!(median_ms(&ms(&[30, 10, 20])), 20.0);
        assert_eq!(median_ms(&ms(&[40, 10, 20, 30])), 25.0);
        assert_eq!(median_ms(&[]), 0.0);
    }
}
