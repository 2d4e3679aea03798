//! Statistics of latency samples: percentiles, an empirical CDF for plots, and the plateau
//! test of the concurrency ramp.

use serde::Serialize;
use std::time::Duration;

/// The value below which a fraction `q` (0..=1) of `sorted` lies: nearest rank, so every
/// percentile is a measured value. `None` for no samples.
pub fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.saturating_sub(1).min(sorted.len() - 1)])
}

/// Percentiles of a set of latencies, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// How many samples.
    pub count: usize,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

impl Summary {
    /// The summary of `latencies`; all zero for none.
    pub fn of(latencies: impl IntoIterator<Item = Duration>) -> Self {
        let mut ms: Vec<f64> = latencies
            .into_iter()
            .map(|latency| latency.as_secs_f64() * 1e3)
            .collect();
        Self::of_ms(&mut ms)
    }

    /// The summary of values in milliseconds (sorted in place).
    pub fn of_ms(ms: &mut [f64]) -> Self {
        ms.sort_by(f64::total_cmp);
        let at = |q| percentile(ms, q).unwrap_or(0.0);
        Self {
            count: ms.len(),
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            max: at(1.0),
            mean: if ms.is_empty() {
                0.0
            } else {
                ms.iter().sum::<f64>() / ms.len() as f64
            },
        }
    }
}

/// At most `points` points `(value, fraction of samples ≤ value)` of the empirical CDF of
/// `sorted`, evenly spaced in rank, the largest value included.
pub fn ecdf(sorted: &[f64], points: usize) -> Vec<(f64, f64)> {
    let n = sorted.len();
    if n == 0 || points == 0 {
        return Vec::new();
    }
    let step = n.div_ceil(points).max(1);
    let mut curve: Vec<(f64, f64)> = (step - 1..n)
        .step_by(step)
        .map(|i| (sorted[i], (i + 1) as f64 / n as f64))
        .collect();
    if curve.last().is_none_or(|&(_, y)| y < 1.0) {
        curve.push((sorted[n - 1], 1.0));
    }
    curve
}

/// Decides when a ramp's throughput stops growing: after `patience` steps in a row none of
/// which beat the best rate so far by more than `tolerance` (a fraction).
#[derive(Debug, Clone)]
pub struct Plateau {
    tolerance: f64,
    patience: usize,
    best: f64,
    best_step: usize,
    steps: usize,
}

impl Plateau {
    /// A detector that waits `patience` steps without `tolerance` growth.
    pub fn new(tolerance: f64, patience: usize) -> Self {
        Self {
            tolerance,
            patience,
            best: 0.0,
            best_step: 0,
            steps: 0,
        }
    }

    /// Adds the rate of one step; true once the rate has plateaued.
    pub fn push(&mut self, rate: f64) -> bool {
        self.steps += 1;
        if self.steps == 1 || rate > self.best * (1.0 + self.tolerance) {
            self.best = rate;
            self.best_step = self.steps;
        }
        self.steps - self.best_step >= self.patience
    }

    /// The best rate so far and the step (from 1) that reached it.
    pub fn best(&self) -> (f64, usize) {
        (self.best, self.best_step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 0.5), Some(50.0));
        assert_eq!(percentile(&values, 0.9), Some(90.0));
        assert_eq!(percentile(&values, 0.99), Some(99.0));
        assert_eq!(percentile(&values, 1.0), Some(100.0));
        assert_eq!(percentile(&values, 0.0), Some(1.0));
        assert_eq!(percentile(&[7.0], 0.99), Some(7.0));
        assert_eq!(percentile(&[], 0.5), None);
        // Ten samples: the 99th percentile is the largest, the median the fifth.
        let ten: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&ten, 0.99), Some(10.0));
        assert_eq!(percentile(&ten, 0.5), Some(5.0));
    }

    #[test]
    fn a_summary_sorts_and_averages() {
        let summary = Summary::of([3, 1, 2, 4].map(Duration::from_millis));
        assert_eq!(summary.count, 4);
        assert_eq!(summary.p50, 2.0);
        assert_eq!(summary.max, 4.0);
        assert_eq!(summary.mean, 2.5);
        assert_eq!(Summary::of([]).count, 0);
    }

    #[test]
    fn an_ecdf_rises_to_one_at_the_largest_value() {
        let values: Vec<f64> = (1..=1000).map(f64::from).collect();
        let curve = ecdf(&values, 10);
        assert_eq!(curve.len(), 10);
        assert_eq!(curve[0], (100.0, 0.1));
        assert_eq!(*curve.last().unwrap(), (1000.0, 1.0));
        assert!(
            curve
                .windows(2)
                .all(|w| w[0].0 <= w[1].0 && w[0].1 < w[1].1)
        );
        // Fewer samples than points: every sample is a point.
        assert_eq!(
            ecdf(&[1.0, 2.0, 3.0], 10),
            [(1.0, 1.0 / 3.0), (2.0, 2.0 / 3.0), (3.0, 1.0)]
        );
        assert!(ecdf(&[], 10).is_empty());
    }

    #[test]
    fn a_plateau_is_patience_steps_without_growth() {
        let mut plateau = Plateau::new(0.05, 3);
        // Growing: never a plateau.
        for rate in [100.0, 200.0, 300.0, 400.0] {
            assert!(!plateau.push(rate));
        }
        // Flat within 5%: the third flat step is the plateau.
        assert!(!plateau.push(410.0));
        assert!(!plateau.push(395.0));
        assert!(plateau.push(419.0));
        assert_eq!(plateau.best(), (400.0, 4));
    }

    #[test]
    fn growth_past_the_tolerance_restarts_the_wait() {
        let mut plateau = Plateau::new(0.05, 2);
        assert!(!plateau.push(100.0));
        assert!(!plateau.push(101.0));
        assert!(!plateau.push(120.0));
        assert!(!plateau.push(121.0));
        assert!(plateau.push(90.0));
        assert_eq!(plateau.best(), (120.0, 3));
    }
}
