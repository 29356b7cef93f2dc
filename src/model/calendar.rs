//! Working days in the centre's time zone: Monday to Friday that are not a configured
//! holiday. Pure: the times are parameters, nothing reads the clock. Work orders
//! (`crate::work_orders::Calendar`) and the subscribers' orders count their deadlines in
//! them.
//!
//! A day is the local calendar day in the time zone; its end is the first instant of the
//! next local day (so a day of a daylight-saving change is 23 or 25 hours long, and "end of
//! day" is always local midnight).

use std::collections::BTreeSet;

use jiff::Timestamp;
use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;

/// The working days of a centre.
#[derive(Clone, Debug)]
pub struct WorkingDays {
    holidays: BTreeSet<Date>,
    tz: TimeZone,
}

impl WorkingDays {
    /// Monday to Friday minus `holidays`, in time zone `tz`.
    pub fn new(holidays: impl IntoIterator<Item = Date>, tz: TimeZone) -> WorkingDays {
        WorkingDays {
            holidays: holidays.into_iter().collect(),
            tz,
        }
    }

    /// The time zone.
    pub fn tz(&self) -> &TimeZone {
        &self.tz
    }

    /// Monday to Friday and not a holiday.
    pub fn is_working_day(&self, d: Date) -> bool {
        !matches!(d.weekday(), Weekday::Saturday | Weekday::Sunday) && !self.holidays.contains(&d)
    }

    /// The `n`th working day after `day` (`day` itself never counts; `n = 0` is `day`).
    pub fn working_day_after(&self, day: Date, n: u32) -> Date {
        // Every week has five weekdays, of which holidays take at most their number, so
        // this many days always hold `n` working days: a bound, not a guess.
        let bound = (u64::from(n) + self.holidays.len() as u64 + 1) * 7 / 5 + 7;
        let mut d = day;
        let mut left = n;
        for _ in 0..bound {
            if left == 0 {
                break;
            }
            d = match d.tomorrow() {
                Ok(t) => t,
                // The end of the calendar (year 9999): nothing later exists.
                Err(_) => return d,
            };
            if self.is_working_day(d) {
                left -= 1;
            }
        }
        d
    }

    /// The local calendar day of an instant.
    pub fn day_of(&self, t: Timestamp) -> Date {
        t.to_zoned(self.tz.clone()).date()
    }

    /// The first instant of the local day after `d` (the end of `d`).
    pub fn end_of_day(&self, d: Date) -> Timestamp {
        d.tomorrow()
            .and_then(|next| next.to_zoned(self.tz.clone()))
            .map(|z| z.timestamp())
            .unwrap_or(Timestamp::MAX)
    }

    /// Whether any holiday is configured in `year` (a list that does not cover the year
    /// silently counts its holidays as working days).
    pub fn covers(&self, year: i16) -> bool {
        self.holidays.iter().any(|d| d.year() == year)
    }
}

/// The default holidays: the Swedish public holidays ("allmänna helgdagar", lag 1989:253) of
/// 2026 and 2027, and the eves that are not working days in practice (midsummer eve,
/// Christmas eve, New Year's eve). Days that fall on a weekend are listed too.
pub fn swedish_holidays_2026_2027() -> Vec<Date> {
    use jiff::civil::date;
    vec![
        // 2026
        date(2026, 1, 1),   // nyårsdagen
        date(2026, 1, 6),   // trettondedag jul
        date(2026, 4, 3),   // långfredagen
        date(2026, 4, 5),   // påskdagen
        date(2026, 4, 6),   // annandag påsk
        date(2026, 5, 1),   // första maj
        date(2026, 5, 14),  // Kristi himmelsfärdsdag
        date(2026, 5, 24),  // pingstdagen
        date(2026, 6, 6),   // Sveriges nationaldag
        date(2026, 6, 19),  // midsommarafton
        date(2026, 6, 20),  // midsommardagen
        date(2026, 10, 31), // alla helgons dag
        date(2026, 12, 24), // julafton
        date(2026, 12, 25), // juldagen
        date(2026, 12, 26), // annandag jul
        date(2026, 12, 31), // nyårsafton
        // 2027
        date(2027, 1, 1),   // nyårsdagen
        date(2027, 1, 6),   // trettondedag jul
        date(2027, 3, 26),  // långfredagen
        date(2027, 3, 28),  // påskdagen
        date(2027, 3, 29),  // annandag påsk
        date(2027, 5, 1),   // första maj
        date(2027, 5, 6),   // Kristi himmelsfärdsdag
        date(2027, 5, 16),  // pingstdagen
        date(2027, 6, 6),   // Sveriges nationaldag
        date(2027, 6, 25),  // midsommarafton
        date(2027, 6, 26),  // midsommardagen
        date(2027, 11, 6),  // alla helgons dag
        date(2027, 12, 24), // julafton
        date(2027, 12, 25), // juldagen
        date(2027, 12, 26), // annandag jul
        date(2027, 12, 31), // nyårsafton
    ]
}
