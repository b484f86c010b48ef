//! Block arithmetic for range partitions. Partition values map to integer units (integers
//! as they are, floats floored, datetimes as epoch seconds, dates as epoch days); a block
//! of interval `I` with id `b` covers `[b·I, (b+1)·I)`, clipped to the range queried, which
//! is exactly what the generated `block_id` (floor division) and half-open range
//! predicates select on every side.

use crate::expr::Value;
use crate::ir::{PartitionKind, Reconciliation};
use crate::sql::DialectKind;
use chrono::{DateTime, NaiveDate, NaiveDateTime};

const DAY: i64 = 86_400;

/// 2^53: a float partition's values and block bounds must stay within ±this, where every
/// whole number is a float.
pub const FLOAT_UNITS: f64 = 9_007_199_254_740_992.0;

/// The unit a partition kind is counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Integer values.
    Int,
    /// Floats, floored to integers for block boundaries.
    Float,
    /// Datetimes as epoch seconds.
    Seconds,
    /// Dates as epoch days.
    Days,
}

impl Unit {
    /// The unit of a range partition; `None` for uuid/str (md5-prefix buckets).
    pub fn of(kind: PartitionKind) -> Option<Unit> {
        match kind {
            PartitionKind::Int => Some(Unit::Int),
            PartitionKind::Float => Some(Unit::Float),
            PartitionKind::Datetime => Some(Unit::Seconds),
            PartitionKind::Date => Some(Unit::Days),
            PartitionKind::Uuid | PartitionKind::Str => None,
        }
    }

    /// A partition value in units: its floor, or with `ceil` its ceiling (for exclusive
    /// upper bounds given with a fraction).
    pub fn to_units(self, v: &Value, ceil: bool) -> Option<i64> {
        // `None` beyond the range blocks are counted in (`as` would saturate, and those
        // rows would lie in no block). A float partition stops at ±2^53, past which floats
        // are not every whole number: a block's bounds would round onto each other.
        let limit = match self {
            Unit::Float => FLOAT_UNITS,
            _ => -(i64::MIN as f64),
        };
        let round = |x: f64| {
            let r = if ceil { x.ceil() } else { x.floor() };
            (r.is_finite() && (-limit..limit).contains(&r)).then_some(r as i64)
        };
        match (self, v) {
            (Unit::Int, Value::Int(i)) => Some(*i),
            (Unit::Int | Unit::Float, Value::Float(f)) => round(*f),
            (Unit::Int | Unit::Float, Value::Decimal(d)) => round(d.to_f64()),
            (Unit::Float, Value::Int(i)) if (*i as f64).abs() < FLOAT_UNITS => Some(*i),
            (Unit::Float, Value::Int(_)) => None,
            (Unit::Seconds, Value::Datetime(t)) => {
                let ts = t.and_utc();
                let s = ts.timestamp();
                Some(if ceil && ts.timestamp_subsec_nanos() > 0 {
                    s + 1
                } else {
                    s
                })
            }
            (Unit::Seconds, Value::Date(d)) => Some(days(*d) * DAY),
            (Unit::Days, Value::Date(d)) => Some(days(*d)),
            (Unit::Days, Value::Datetime(t)) => {
                let s = t.and_utc().timestamp();
                let d = s.div_euclid(DAY);
                Some(if ceil && s.rem_euclid(DAY) > 0 {
                    d + 1
                } else {
                    d
                })
            }
            _ => None,
        }
    }

    /// A unit count as the partition's native value, for binding.
    pub fn value(self, u: i64) -> Value {
        match self {
            Unit::Int => Value::Int(u),
            Unit::Float => Value::Float(u as f64),
            Unit::Seconds => DateTime::from_timestamp(u, 0)
                .map(|t| Value::Datetime(t.naive_utc()))
                .unwrap_or(Value::Null),
            Unit::Days => epoch()
                .checked_add_signed(chrono::Duration::days(u))
                .map(Value::Date)
                .unwrap_or(Value::Null),
        }
    }

    /// The last native value before unit `u` begins, for `p > value` bounds meaning
    /// `p >= u` (datetimes keep microseconds); `None` for floats, which have no such value.
    pub fn just_before(self, u: i64) -> Option<Value> {
        match (self, self.value(u)) {
            (Unit::Int, _) => Some(Value::Int(u.checked_sub(1)?)),
            (Unit::Seconds, Value::Datetime(t)) => {
                Some(Value::Datetime(t - chrono::Duration::microseconds(1)))
            }
            (Unit::Days, Value::Date(d)) => Some(Value::Date(d.pred_opt()?)),
            _ => None,
        }
    }

    /// The last instant before unit `u` of a date or datetime partition begins, a datetime
    /// to the microsecond (for dates, 23:59:59.999999 of the day before), which a range
    /// ending at `u` holds: for `p <= value` bounds meaning `p < u`. NULL for other units.
    pub fn last_instant(self, u: i64) -> Value {
        let start = match (self, self.value(u)) {
            (Unit::Seconds, Value::Datetime(t)) => t,
            (Unit::Days, Value::Date(d)) => d.and_time(chrono::NaiveTime::MIN),
            _ => return Value::Null,
        };
        Value::Datetime(start - chrono::Duration::microseconds(1))
    }

    /// The largest exclusive upper bound of a range of this unit that `dialect` can query,
    /// when its date and time types end before the units do. MySQL ends a range at its
    /// last value ([`crate::sql::ends_inclusively`]), so its limit is the end of
    /// its types, 10000-01-01: a range up to it covers 9999-12-31 23:59:59.999999.
    /// ClickHouse binds the exclusive end itself, which must fit its types: `Date`'s limit
    /// is 2149-06-06 and `DateTime`'s 2106-02-07 06:28:15, their last values, which a range
    /// cannot reach ([`Unit::type_end`] is one unit further).
    pub fn bound_limit(self, dialect: DialectKind) -> Option<i64> {
        match (self, dialect) {
            (Unit::Days | Unit::Seconds, DialectKind::Mysql) => self.type_end(dialect),
            (Unit::Days, DialectKind::Clickhouse) => Some(i64::from(u16::MAX)),
            (Unit::Seconds, DialectKind::Clickhouse) => Some(i64::from(u32::MAX)),
            _ => None,
        }
    }

    /// Just past the last value `dialect`'s date or time types hold, in units, when they
    /// end before the units do: MySQL 10000-01-01, ClickHouse `Date` 2149-06-07 and
    /// `DateTime` 2106-02-07 06:28:16.
    pub fn type_end(self, dialect: DialectKind) -> Option<i64> {
        let ymd = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).map(days);
        match (self, dialect) {
            (Unit::Days, DialectKind::Mysql) => ymd(10000, 1, 1),
            (Unit::Seconds, DialectKind::Mysql) => ymd(10000, 1, 1).map(|d| d * DAY),
            (Unit::Days, DialectKind::Clickhouse) => Some(i64::from(u16::MAX) + 1),
            (Unit::Seconds, DialectKind::Clickhouse) => Some(i64::from(u32::MAX) + 1),
            _ => None,
        }
    }

    /// The smallest [`Unit::bound_limit`] of `dialects`, and whether a value of one of
    /// their types lies at or past it (ClickHouse's last `Date` or `DateTime`): the rows
    /// holding such a value are in no range.
    pub fn limit_of(self, dialects: &[DialectKind]) -> Option<(i64, bool)> {
        dialects
            .iter()
            .filter_map(|d| {
                let limit = self.bound_limit(*d)?;
                Some((limit, self.type_end(*d).is_some_and(|e| e > limit)))
            })
            .min()
    }

    /// The earliest value `dialect` can bind for this unit, when its date and time types
    /// begin after the units do: MySQL's `DATETIME` at 1000-01-01, ClickHouse's `Date` and
    /// `DateTime` at 1970-01-01.
    pub fn bound_floor(self, dialect: DialectKind) -> Option<i64> {
        let ymd = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).map(days);
        match (self, dialect) {
            (Unit::Days, DialectKind::Mysql) => ymd(1000, 1, 1),
            (Unit::Seconds, DialectKind::Mysql) => ymd(1000, 1, 1).map(|d| d * DAY),
            (Unit::Days | Unit::Seconds, DialectKind::Clickhouse) => Some(0),
            _ => None,
        }
    }

    /// `v` raised to the latest [`Unit::bound_floor`] of `dialects` (a lookback reaching
    /// before 1970 on a ClickHouse side); other values as they are.
    pub fn raise_to_floor(self, v: Value, dialects: &[DialectKind]) -> Value {
        let floor = dialects.iter().filter_map(|d| self.bound_floor(*d)).max();
        match (floor, self.to_units(&v, false)) {
            (Some(f), Some(u)) if u < f => self.value(f),
            _ => v,
        }
    }

    /// `v` lowered to the last value before the smallest [`Unit::bound_limit`] of
    /// `dialects`, when it lies at or past it; other values as they are.
    pub fn lower_to_limit(self, v: Value, dialects: &[DialectKind]) -> Value {
        match (self.limit_of(dialects), self.to_units(&v, false)) {
            (Some((limit, _)), Some(u)) if u >= limit => self.just_before(limit).unwrap_or(v),
            _ => v,
        }
    }

    /// The level-1 interval in units: `initial_partition_interval` (seconds for datetime
    /// and date partitions) times `partition_multiplier`, at least one unit.
    pub fn level1(self, r: &Reconciliation) -> i64 {
        let base = r
            .initial_interval
            .saturating_mul(r.partition_multiplier.unwrap_or(1).max(1));
        match self {
            Unit::Days => (base / DAY).max(1),
            _ => base.max(1),
        }
    }
}

fn epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date")
}

fn days(d: NaiveDate) -> i64 {
    (d - epoch()).num_days()
}

/// Lookback in the watermark's units: seconds for datetimes, whole days (rounded up) for
/// dates, the number itself for numeric watermarks. A lookback reaching before the earliest
/// representable date or time gives that earliest one (the checker allows at most 100
/// years for these).
pub fn minus_lookback(v: &Value, seconds: i64) -> Value {
    match v {
        Value::Datetime(t) => Value::Datetime(
            chrono::TimeDelta::try_seconds(seconds)
                .and_then(|d| t.checked_sub_signed(d))
                .unwrap_or(NaiveDateTime::MIN),
        ),
        Value::Date(d) => Value::Date(
            chrono::TimeDelta::try_days(seconds / DAY + i64::from(seconds % DAY != 0))
                .and_then(|days| d.checked_sub_signed(days))
                .unwrap_or(NaiveDate::MIN),
        ),
        Value::Int(i) => Value::Int(i.saturating_sub(seconds)),
        Value::Float(f) => Value::Float(f - seconds as f64),
        other => other.clone(),
    }
}

/// A half-open range of units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Range {
    /// First unit (inclusive).
    pub lo: i64,
    /// End (exclusive).
    pub hi: i64,
}

impl Range {
    /// Whether the range holds no unit.
    pub fn is_empty(&self) -> bool {
        self.hi <= self.lo
    }

    /// Block `id` of interval `interval`, clipped to this range.
    pub fn block(&self, id: i64, interval: i64) -> Range {
        // In 128 bits: the first block of an int64 range starts before i64::MIN, and its end
        // is still its own (a saturated start made it `MIN + interval`, overlapping the next).
        let lo = i128::from(id) * i128::from(interval);
        let hi = lo + i128::from(interval);
        let clamp = |v: i128| v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
        Range {
            lo: clamp(lo).max(self.lo),
            hi: clamp(hi).min(self.hi),
        }
    }
}

/// The next level's interval, or `None` when it cannot shrink further.
pub fn next_interval(interval: i64, factor: u32) -> Option<i64> {
    (interval > 1).then(|| (interval / i64::from(factor.max(2))).max(1))
}

/// Sorts ranges and merges the ones that touch, so that each level runs one grouped query
/// per contiguous run of changed parents.
pub fn merge_adjacent(mut v: Vec<Range>) -> Vec<Range> {
    v.sort();
    let mut out: Vec<Range> = Vec::new();
    for r in v {
        match out.last_mut() {
            Some(last) if last.hi >= r.lo => last.hi = last.hi.max(r.hi),
            _ => out.push(r),
        }
    }
    out
}

/// Merges touching leaves while their combined row count stays within `max_rows`.
pub fn merge_leaves(mut v: Vec<(Range, u64)>, max_rows: u64) -> Vec<(Range, u64)> {
    v.sort();
    let mut out: Vec<(Range, u64)> = Vec::new();
    for (r, n) in v {
        match out.last_mut() {
            Some((last, m)) if last.hi == r.lo && *m + n <= max_rows => {
                last.hi = r.hi;
                *m += n;
            }
            _ => out.push((r, n)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datetime(secs: i64) -> Option<NaiveDateTime> {
        DateTime::from_timestamp(secs, 0).map(|t| t.naive_utc())
    }

    #[test]
    fn the_first_block_of_an_int64_range_ends_where_the_next_begins() {
        let all = Range {
            lo: i64::MIN,
            hi: i64::MAX,
        };
        let interval = 1000;
        let first = i64::MIN.div_euclid(interval);
        let a = all.block(first, interval);
        let b = all.block(first + 1, interval);
        assert_eq!(a.lo, i64::MIN);
        assert_eq!(a.hi, b.lo, "{a:?} {b:?}");
        assert_eq!(b.hi - b.lo, interval);
        let huge = all.block(-1, i64::MAX);
        assert_eq!((huge.lo, huge.hi), (-i64::MAX, 0));
    }

    #[test]
    fn lookback_never_overflows() {
        let t = NaiveDate::from_ymd_opt(2024, 1, 2)
            .unwrap()
            .and_hms_opt(3, 0, 0)
            .unwrap();
        assert_eq!(
            minus_lookback(&Value::Datetime(t), 3600),
            Value::Datetime(t - chrono::TimeDelta::hours(1))
        );
        assert_eq!(
            minus_lookback(&Value::Datetime(t), i64::MAX),
            Value::Datetime(NaiveDateTime::MIN)
        );
        assert_eq!(
            minus_lookback(&Value::Datetime(t), 9_000_000_000_000_000),
            Value::Datetime(NaiveDateTime::MIN)
        );
        assert_eq!(
            minus_lookback(&Value::Date(t.date()), DAY + 1),
            Value::Date(t.date() - chrono::TimeDelta::days(2))
        );
        assert_eq!(
            minus_lookback(&Value::Date(t.date()), i64::MAX),
            Value::Date(NaiveDate::MIN)
        );
        assert_eq!(
            minus_lookback(&Value::Int(i64::MIN + 1), i64::MAX),
            Value::Int(i64::MIN)
        );
    }

    #[test]
    fn blocks_are_clipped_to_the_query_range() {
        let q = Range { lo: 5, hi: 250 };
        assert_eq!(q.block(0, 100), Range { lo: 5, hi: 100 });
        assert_eq!(q.block(2, 100), Range { lo: 200, hi: 250 });
        assert_eq!(
            Range { lo: -250, hi: 0 }.block(-3, 100),
            Range { lo: -250, hi: -200 }
        );
    }

    #[test]
    fn intervals_shrink_to_one_unit() {
        assert_eq!(next_interval(100_000, 10), Some(10_000));
        assert_eq!(next_interval(5, 10), Some(1));
        assert_eq!(next_interval(1, 10), None);
    }

    #[test]
    fn adjacent_ranges_and_leaves_merge() {
        let r = |lo, hi| Range { lo, hi };
        assert_eq!(
            merge_adjacent(vec![r(20, 30), r(0, 10), r(10, 20), r(40, 50)]),
            vec![r(0, 30), r(40, 50)]
        );
        assert_eq!(
            merge_leaves(
                vec![(r(0, 10), 400), (r(10, 20), 500), (r(20, 30), 200)],
                1000
            ),
            vec![(r(0, 20), 900), (r(20, 30), 200)]
        );
        assert_eq!(
            merge_leaves(vec![(r(0, 10), 1), (r(11, 20), 1)], 1000),
            vec![(r(0, 10), 1), (r(11, 20), 1)]
        );
    }

    #[test]
    fn floats_beyond_64_bits_have_no_units() {
        assert_eq!(Unit::Float.to_units(&Value::Float(-2.5), false), Some(-3));
        assert_eq!(Unit::Float.to_units(&Value::Float(-2.5), true), Some(-2));
        assert_eq!(
            Unit::Int.to_units(&Value::Float(i64::MIN as f64), false),
            Some(i64::MIN)
        );
        assert_eq!(
            Unit::Float.to_units(&Value::Float(9.0e15), false),
            Some(9_000_000_000_000_000)
        );
        for f in [
            1e17,
            -1e16,
            1e20,
            -1e20,
            -(i64::MIN as f64),
            f64::NAN,
            f64::INFINITY,
        ] {
            assert_eq!(Unit::Float.to_units(&Value::Float(f), false), None, "{f}");
        }
    }

    #[test]
    fn ranges_end_where_each_dialect_can_bound_them() {
        let my = [DialectKind::Mysql];
        let ch = [DialectKind::Postgres, DialectKind::Clickhouse];
        let max = NaiveDate::from_ymd_opt(9999, 12, 31).unwrap();
        let last = max.and_hms_micro_opt(23, 59, 59, 999_999).unwrap();
        // MySQL: up to the end of its types, whose last instant a range still holds.
        let (limit, lossy) = Unit::Seconds.limit_of(&my).unwrap();
        assert!(!lossy);
        assert_eq!(Unit::Seconds.last_instant(limit), Value::Datetime(last));
        assert_eq!(
            Unit::Seconds.to_units(&Value::Datetime(last), false),
            Some(limit - 1)
        );
        let (days, _) = Unit::Days.limit_of(&my).unwrap();
        assert_eq!(Unit::Days.value(days - 1), Value::Date(max));
        assert_eq!(Unit::Days.last_instant(days), Value::Datetime(last));
        // ClickHouse: before its types' last value, which no exclusive end can follow.
        assert_eq!(
            Unit::Seconds.limit_of(&ch),
            Some((i64::from(u32::MAX), true))
        );
        assert_eq!(Unit::Days.limit_of(&ch), Some((i64::from(u16::MAX), true)));
        assert_eq!(Unit::Int.limit_of(&ch), None);
        assert_eq!(Unit::Seconds.limit_of(&[DialectKind::Postgres]), None);
        // A value past the limit is lowered to the last one before it; others stay.
        let far = Value::Datetime(
            NaiveDate::from_ymd_opt(2200, 1, 1)
                .unwrap()
                .and_hms_opt(0, 0, 0)
                .unwrap(),
        );
        assert_eq!(
            Unit::Seconds.lower_to_limit(far.clone(), &ch),
            Unit::Seconds.just_before(i64::from(u32::MAX)).unwrap()
        );
        assert_eq!(Unit::Seconds.lower_to_limit(far.clone(), &my), far);
    }

    #[test]
    fn time_units_round_trip() {
        let t = NaiveDate::from_ymd_opt(1969, 12, 31)
            .unwrap()
            .and_hms_micro_opt(23, 59, 59, 500_000)
            .unwrap();
        assert_eq!(Unit::Seconds.to_units(&Value::Datetime(t), false), Some(-1));
        assert_eq!(Unit::Seconds.to_units(&Value::Datetime(t), true), Some(0));
        assert_eq!(
            Unit::Seconds.value(-1),
            Value::Datetime(datetime(-1).unwrap())
        );
        let d = NaiveDate::from_ymd_opt(1970, 1, 3).unwrap();
        assert_eq!(Unit::Days.to_units(&Value::Date(d), false), Some(2));
        assert_eq!(Unit::Days.value(2), Value::Date(d));
    }
}
