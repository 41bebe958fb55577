//! The quota of match requests per caller (DESIGN.md "Fair use"): a token
//! bucket of `burst` requests that refills at `rate` a second, shared by every
//! api instance through a `QuotaStore`.
//!
//! The bucket is kept as one number, its theoretical arrival time (`tat`,
//! GCRA, the token bucket's equivalent as a meter): the moment the bucket
//! will be full again. A request at `now` fits when `tat <= now + (burst - 1)
//! · interval`, and takes one token by moving `tat` on by one interval
//! (from `now` when the bucket is full). One number makes each take one
//! conditional write in DynamoDB (`adapters::dynamo_quota`), with no read
//! first; a count of tokens would also need the time it was counted at.
//!
//! Times are microseconds since the Unix epoch, from the api instance's
//! clock (NTP-synchronised on Lambda; a skew of milliseconds moves a refill
//! by as much).

/// The policy's name in `RateLimit-Policy` and `RateLimit`.
pub const POLICY_NAME: &str = "match";
/// Bounds of `QUOTA_RATE` (requests a second) and `QUOTA_BURST`: an interval
/// of 100 µs to 1,000 s, and tat arithmetic far from i64's limits.
pub const MIN_RATE: f64 = 0.001;
pub const MAX_RATE: f64 = 10_000.0;
pub const MAX_BURST: u32 = 1_000_000;

const MICROS: i64 = 1_000_000;

/// A caller's bucket as its answer states it, in the fields of the IETF
/// draft "RateLimit header fields for HTTP" (draft-ietf-httpapi-ratelimit-
/// headers-11, May 2026): the policy's quota `q` (the burst) per window `w`
/// (the seconds to refill an empty bucket), the requests available now `r`,
/// and `t`, the seconds until one more is (so within `t` seconds no more
/// than `r` fit). A refused request has `r` 0, and `t` is its Retry-After.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub quota: u32,
    pub window_secs: u64,
    pub remaining: u32,
    pub reset_secs: u64,
}

impl RateLimit {
    /// `RateLimit-Policy: "match";q=<burst>;w=<refill seconds>`.
    pub fn policy_field(&self) -> String {
        format!("\"{POLICY_NAME}\";q={};w={}", self.quota, self.window_secs)
    }

    /// `RateLimit: "match";r=<available>;t=<seconds to the next>`.
    pub fn limit_field(&self) -> String {
        format!(
            "\"{POLICY_NAME}\";r={};t={}",
            self.remaining, self.reset_secs
        )
    }
}

/// The bucket's settings, and its arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Microseconds per token: 1 / rate.
    interval_us: i64,
    burst: u32,
}

impl Policy {
    /// `rate` requests a second (MIN_RATE..=MAX_RATE), `burst` at once
    /// (1..=MAX_BURST); the message names what is wrong.
    pub fn new(rate: f64, burst: u32) -> Result<Policy, String> {
        if !(MIN_RATE..=MAX_RATE).contains(&rate) {
            return Err(format!(
                "QUOTA_RATE must be {MIN_RATE}..={MAX_RATE} requests a second, not {rate}"
            ));
        }
        if !(1..=MAX_BURST).contains(&burst) {
            return Err(format!("QUOTA_BURST must be 1..={MAX_BURST}, not {burst}"));
        }
        Ok(Policy {
            interval_us: (1e6 / rate).round() as i64,
            burst,
        })
    }

    pub fn interval_us(&self) -> i64 {
        self.interval_us
    }

    pub fn burst(&self) -> u32 {
        self.burst
    }

    fn span_us(&self, tokens: u32) -> i64 {
        i64::from(tokens) * self.interval_us
    }

    /// The tat after a request into a full bucket (no tat, or one passed).
    pub fn fresh(&self, now_us: i64) -> i64 {
        now_us + self.interval_us
    }

    /// The latest tat that still admits a request at `now_us`.
    pub fn limit(&self, now_us: i64) -> i64 {
        now_us + self.span_us(self.burst - 1)
    }

    /// When the bucket's item may be deleted (DynamoDB's TTL, epoch
    /// seconds): a tat written at `now_us` is at most `now + burst ·
    /// interval`, and past its tat a bucket is full, as if absent.
    pub fn expires_at(&self, now_us: i64) -> i64 {
        (now_us + self.span_us(self.burst)).div_euclid(MICROS) + 1
    }

    /// One request at `now_us` against a bucket at `tat`: the new tat and the
    /// answer's fields, or the refusal's fields (the tat stays).
    pub fn take(&self, tat: Option<i64>, now_us: i64) -> Result<(i64, RateLimit), RateLimit> {
        let next = match tat {
            Some(tat) if tat > self.limit(now_us) => return Err(self.state(tat, now_us)),
            Some(tat) if tat > now_us => tat + self.interval_us,
            _ => self.fresh(now_us),
        };
        Ok((next, self.state(next, now_us)))
    }

    /// A bucket at `tat` seen at `now_us`: it was empty at `tat - burst ·
    /// interval` and gains a token each interval since.
    pub fn state(&self, tat: i64, now_us: i64) -> RateLimit {
        let empty_at = tat - self.span_us(self.burst);
        let tokens = (now_us - empty_at)
            .div_euclid(self.interval_us)
            .clamp(0, i64::from(self.burst));
        let next_at = empty_at + (tokens + 1) * self.interval_us;
        RateLimit {
            quota: self.burst,
            window_secs: ceil_secs(self.span_us(self.burst)).max(1),
            remaining: u32::try_from(tokens).unwrap_or(self.burst),
            reset_secs: ceil_secs(next_at - now_us).max(1),
        }
    }
}

fn ceil_secs(us: i64) -> u64 {
    u64::try_from(us.max(0))
        .unwrap_or(0)
        .div_ceil(MICROS as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    const S: i64 = MICROS;

    /// 2 a second (one token each 0.5 s), 3 at once.
    fn two_a_second_three_at_once() -> Policy {
        Policy::new(2.0, 3).expect("policy")
    }

    fn admitted(p: &Policy, tat: Option<i64>, now: i64) -> (i64, RateLimit) {
        p.take(tat, now).expect("admitted")
    }

    #[test]
    fn a_full_bucket_gives_burst_requests_then_refuses() {
        let p = two_a_second_three_at_once();
        let t0 = 1_800_000_000 * S;
        let (tat, l) = admitted(&p, None, t0);
        assert_eq!(tat, t0 + S / 2);
        assert_eq!((l.remaining, l.reset_secs), (2, 1));
        let (tat, l) = admitted(&p, Some(tat), t0);
        assert_eq!((tat, l.remaining), (t0 + S, 1));
        let (tat, l) = admitted(&p, Some(tat), t0);
        assert_eq!((tat, l.remaining), (t0 + 3 * S / 2, 0));
        // The fourth at the same moment: refused, the next token in 0.5 s,
        // so Retry-After 1 (whole seconds, rounded up).
        let refused = p.take(Some(tat), t0).expect_err("refused");
        assert_eq!(
            refused,
            RateLimit {
                quota: 3,
                window_secs: 2,
                remaining: 0,
                reset_secs: 1
            }
        );
    }

    #[test]
    fn tokens_come_back_at_the_rate() {
        let p = two_a_second_three_at_once();
        let t0 = 1_000 * S;
        // Empty: tat 1.5 s ahead.
        let empty = t0 + 3 * S / 2;
        assert!(
            p.take(Some(empty), t0 + S / 2 - 1).is_err(),
            "0.5 s less 1 µs: none yet"
        );
        let (tat, l) = admitted(&p, Some(empty), t0 + S / 2);
        assert_eq!((tat, l.remaining), (t0 + 2 * S, 0));
        // 1 s later two more have come back; one is taken now.
        let (_, l) = admitted(&p, Some(tat), t0 + 3 * S / 2);
        assert_eq!(l.remaining, 1);
    }

    #[test]
    fn an_idle_bucket_holds_burst_tokens_and_no_more() {
        let p = two_a_second_three_at_once();
        let (tat, _) = admitted(&p, None, 0);
        // An hour idle: 7,200 intervals, but the bucket holds 3.
        let (tat, l) = admitted(&p, Some(tat), 3_600 * S);
        assert_eq!(tat, 3_600 * S + S / 2, "starts over from now");
        assert_eq!(l.remaining, 2);
    }

    #[test]
    fn retry_after_is_the_wait_for_the_next_token() {
        // One request every 10 s, one at once.
        let p = Policy::new(0.1, 1).expect("policy");
        let (tat, l) = admitted(&p, None, 0);
        assert_eq!((l.remaining, l.reset_secs, l.window_secs), (0, 10, 10));
        let refused = p.take(Some(tat), S).expect_err("refused");
        assert_eq!((refused.remaining, refused.reset_secs), (0, 9));
        let refused = p.take(Some(tat), 9 * S + 1).expect_err("refused");
        assert_eq!(refused.reset_secs, 1, "under a second left: 1");
        assert!(p.take(Some(tat), 10 * S).is_ok());
    }

    #[test]
    fn a_refusal_waits_for_the_token_after_the_empty_moment() {
        let p = two_a_second_three_at_once();
        // Full again at 3 s, so empty at 1.5 s: the next token at 2 s.
        let l = p.take(Some(3 * S), 0).expect_err("refused");
        assert_eq!((l.remaining, l.reset_secs), (0, 2));
        let err = Error::QuotaExceeded(l);
        assert_eq!((err.status(), err.code().as_str()), (429, "quota_exceeded"));
    }

    #[test]
    fn a_bucket_ahead_of_this_clock_reads_as_empty() {
        // Another instance's clock ran ahead: tat beyond now + burst intervals.
        let p = two_a_second_three_at_once();
        let l = p.state(10 * S, 0);
        assert_eq!((l.remaining, l.reset_secs), (0, 9));
    }

    #[test]
    fn the_item_expires_once_the_bucket_is_full_again() {
        let p = two_a_second_three_at_once();
        let now = 100 * S + 1;
        // The furthest tat a take at `now` can write: limit + one interval.
        let furthest = p.limit(now) + p.interval_us();
        assert!(p.expires_at(now) * S >= furthest);
        assert_eq!(p.expires_at(now), 102);
    }

    #[test]
    fn header_fields_follow_the_draft() {
        let l = RateLimit {
            quota: 100,
            window_secs: 50,
            remaining: 7,
            reset_secs: 1,
        };
        assert_eq!(l.policy_field(), r#""match";q=100;w=50"#);
        assert_eq!(l.limit_field(), r#""match";r=7;t=1"#);
    }

    #[test]
    fn settings_out_of_bounds_are_refused_by_name() {
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY, 0.0005, 10_001.0] {
            let e = Policy::new(rate, 10).expect_err("rate");
            assert!(e.contains("QUOTA_RATE"), "{e}");
        }
        for burst in [0, MAX_BURST + 1] {
            let e = Policy::new(1.0, burst).expect_err("burst");
            assert!(e.contains("QUOTA_BURST"), "{e}");
        }
        let p = Policy::new(3.0, 1).expect("policy");
        assert_eq!(p.interval_us(), 333_333);
        assert_eq!(p.burst(), 1);
    }
}
