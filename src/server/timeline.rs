//! What the dashboard draws: messages per action per minute over the last
//! day, and the latest scan times for latency percentiles. Kept beside the
//! counters because `/stat`'s totals cannot say *when*; bounded (1,440
//! minutes, 4,096 latencies), so it costs the same after a year as after a
//! minute.

use std::collections::VecDeque;

/// Actions counted apart, in the order of `state::ACTIONS`.
pub const ACTION_SLOTS: usize = 6;

/// Minutes kept (one day).
const MINUTES: usize = 24 * 60;
/// Scan times kept for the percentiles.
const LATENCIES: usize = 4096;

#[derive(Debug, Clone, Copy, Default)]
pub struct Minute {
    /// Unix minute (seconds / 60).
    pub minute: u64,
    /// Messages per action, in `state::ACTIONS` order.
    pub actions: [u32; ACTION_SLOTS],
}

#[derive(Default)]
pub struct Timeline {
    minutes: VecDeque<Minute>,
    latencies: VecDeque<f32>,
}

impl Timeline {
    /// Counts one scan that ended at `unix_secs` with action index `action`
    /// after `seconds`.
    pub fn record(&mut self, unix_secs: u64, action: Option<usize>, seconds: f64) {
        let minute = unix_secs / 60;
        if self.minutes.back().is_none_or(|m| m.minute < minute) {
            self.minutes.push_back(Minute {
                minute,
                ..Minute::default()
            });
            while self.minutes.len() > MINUTES {
                self.minutes.pop_front();
            }
        }
        if let (Some(last), Some(index)) = (self.minutes.back_mut(), action)
            && let Some(count) = last.actions.get_mut(index)
        {
            *count = count.saturating_add(1);
        }
        self.latencies.push_back(seconds as f32);
        while self.latencies.len() > LATENCIES {
            self.latencies.pop_front();
        }
    }

    /// The minutes since `since_minute` that saw scans, oldest first.
    pub fn minutes_since(&self, since_minute: u64) -> Vec<Minute> {
        self.minutes
            .iter()
            .filter(|m| m.minute >= since_minute)
            .copied()
            .collect()
    }

    /// The 50th, 90th and 99th percentile of the latest scan times, in
    /// seconds (`None` before the first scan).
    pub fn percentiles(&self) -> Option<[f64; 3]> {
        if self.latencies.is_empty() {
            return None;
        }
        let mut sorted: Vec<f32> = self.latencies.iter().copied().collect();
        sorted.sort_by(f32::total_cmp);
        let at = |q: f64| {
            let index = ((sorted.len() - 1) as f64 * q).round() as usize;
            f64::from(sorted[index.min(sorted.len() - 1)])
        };
        Some([at(0.5), at(0.9), at(0.99)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_are_counted_in_their_minute_and_old_minutes_go() {
        let mut timeline = Timeline::default();
        timeline.record(120, Some(0), 0.001);
        timeline.record(179, Some(0), 0.003);
        timeline.record(180, Some(5), 0.002);
        let minutes = timeline.minutes_since(0);
        assert_eq!(minutes.len(), 2);
        assert_eq!(minutes[0].actions[0], 2);
        assert_eq!(minutes[1].actions[5], 1);
        assert_eq!(timeline.minutes_since(3).len(), 1);
        let [p50, _, p99] = timeline.percentiles().unwrap();
        assert!((p50 - 0.002).abs() < 1e-6 && (p99 - 0.003).abs() < 1e-6);
        for minute in 0..(MINUTES as u64 + 10) {
            timeline.record(1000 * 60 + minute * 60, None, 0.0);
        }
        assert_eq!(timeline.minutes_since(0).len(), MINUTES);
    }
}
