//! The flood rate limit: how many frames per second one ingress location (a local port,
//! or one remote VTEP behind the overlay port) may have flooded, so that one station's
//! broadcast storm or unknown-unicast spray cannot flood every other port without end.
//!
//! A [`FloodBucket`] is a token bucket written as the generic cell rate algorithm (GCRA,
//! ITU-T I.371): it keeps one instant, the theoretical arrival time of the next frame, and
//! admits a frame when that time is no more than `burst` emission intervals ahead of
//! `now`. So it admits `burst` frames at once and then one every `1 / per_second`
//! seconds; idle time refills it up to `burst`, never beyond. It reads no clock: the
//! caller passes `now`.
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

/// A flood rate: `per_second` frames a second on average, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FloodRate {
    /// Sustained flooded frames per second; 0 turns the limit off.
    pub per_second: u32,
    /// Frames that may be flooded back to back after a quiet spell (at least 1 is used).
    pub burst: u32,
}

impl FloodRate {
    /// No limit.
    pub const UNLIMITED: FloodRate = FloodRate {
        per_second: 0,
        burst: 0,
    };

    /// True when the limit is off.
    pub fn is_unlimited(&self) -> bool {
        self.per_second == 0
    }
}

/// The limiter state of one ingress location.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FloodBucket {
    /// When the bucket will have room for one more frame at the sustained rate; `None`
    /// while it has never been used.
    next_due: Option<Instant>,
}

impl FloodBucket {
    /// A full bucket.
    pub fn new() -> FloodBucket {
        FloodBucket::default()
    }

    /// Takes one frame out of the bucket at `now` under `rate`: true when the frame may be
    /// flooded, false when it is over the rate (and the bucket is left as it was).
    pub fn admit(&mut self, rate: FloodRate, now: Instant) -> bool {
        if rate.is_unlimited() {
            return true;
        }
        let interval = Duration::from_secs(1) / rate.per_second;
        let span = interval
            .checked_mul(rate.burst.max(1))
            .unwrap_or(Duration::MAX);
        let due = self.next_due.map_or(now, |due| due.max(now));
        let Some(next) = due.checked_add(interval) else {
            return false;
        };
        if next.saturating_duration_since(now) > span {
            return false;
        }
        self.next_due = Some(next);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted(bucket: &mut FloodBucket, rate: FloodRate, now: Instant, frames: u32) -> u32 {
        (0..frames)
            .map(|_| u32::from(bucket.admit(rate, now)))
            .sum()
    }

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let rate = FloodRate {
            per_second: 100,
            burst: 20,
        };
        let t0 = Instant::now();
        let mut bucket = FloodBucket::new();
        assert_eq!(admitted(&mut bucket, rate, t0, 1000), 20);
        // 10 ms later: one interval has passed, one frame more.
        let t1 = t0 + Duration::from_millis(10);
        assert_eq!(admitted(&mut bucket, rate, t1, 1000), 1);
        // A storm over one second at 1 frame per 100 µs passes about 100 frames more.
        let mut passed = 0;
        for tick in 1..=10_000u32 {
            let now = t1 + Duration::from_micros(100) * tick;
            passed += u32::from(bucket.admit(rate, now));
        }
        assert!((99..=101).contains(&passed), "{passed}");
        // A quiet minute refills the bucket to its burst, not beyond.
        let later = t1 + Duration::from_secs(61);
        assert_eq!(admitted(&mut bucket, rate, later, 1000), 20);
    }

    #[test]
    fn unlimited_and_degenerate_rates() {
        let t0 = Instant::now();
        let mut bucket = FloodBucket::new();
        assert_eq!(
            admitted(&mut bucket, FloodRate::UNLIMITED, t0, 10_000),
            10_000
        );
        let no_burst = FloodRate {
            per_second: 10,
            burst: 0,
        };
        let mut bucket = FloodBucket::new();
        assert_eq!(admitted(&mut bucket, no_burst, t0, 50), 1);
        let huge = FloodRate {
            per_second: u32::MAX,
            burst: u32::MAX,
        };
        let mut bucket = FloodBucket::new();
        assert_eq!(admitted(&mut bucket, huge, t0, 1000), 1000);
    }

    #[test]
    fn time_going_back_does_not_refill() {
        let rate = FloodRate {
            per_second: 10,
            burst: 2,
        };
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut bucket = FloodBucket::new();
        assert_eq!(admitted(&mut bucket, rate, t0, 10), 2);
        let earlier = t0 - Duration::from_secs(5);
        assert_eq!(admitted(&mut bucket, rate, earlier, 10), 0);
    }
}
