//! Working days and the two deadlines of a work order, in the centre's time zone. Pure: the
//! times are parameters, nothing reads the clock.
//!
//! A *working day* is a Monday to Friday that is not a configured holiday. A day is the
//! local calendar day in the time zone; its end is the first instant of the next local day
//! (so a day of a daylight-saving change is 23 or 25 hours long, and "end of day" is always
//! local midnight).

use jiff::Timestamp;
use jiff::ToSpan;
use jiff::civil::Date;
use jiff::tz::TimeZone;

pub use crate::model::calendar::{WorkingDays, swedish_holidays_2026_2027};

use super::WorkOrderOptions;

/// Working days and the two deadlines of a work order.
#[derive(Clone, Debug)]
pub struct Calendar {
    days: WorkingDays,
    start_working_days: u32,
    finish_days: u32,
}

impl Calendar {
    /// The calendar of the options in time zone `tz`.
    pub fn new(opts: &WorkOrderOptions, tz: TimeZone) -> Calendar {
        Calendar {
            days: WorkingDays::new(opts.holidays.iter().copied(), tz),
            start_working_days: opts.start_working_days,
            finish_days: opts.finish_days,
        }
    }

    /// The working days it counts in (shared with the subscribers' orders).
    pub fn working_days(&self) -> &WorkingDays {
        &self.days
    }

    /// The time zone.
    pub fn tz(&self) -> &TimeZone {
        self.days.tz()
    }

    /// Monday to Friday and not a holiday.
    pub fn is_working_day(&self, d: Date) -> bool {
        self.days.is_working_day(d)
    }

    /// The `n`th working day after `day` (`day` itself never counts; `n = 0` is `day`).
    pub fn working_day_after(&self, day: Date, n: u32) -> Date {
        self.days.working_day_after(day, n)
    }

    /// The local calendar day of an instant.
    pub fn day_of(&self, t: Timestamp) -> Date {
        self.days.day_of(t)
    }

    /// The first instant of the local day after `d` (the end of `d`).
    pub fn end_of_day(&self, d: Date) -> Timestamp {
        self.days.end_of_day(d)
    }

    /// When an order made at `created` must have been started: the end of the
    /// `start_working_days`th working day after the local day of `created` (the order's own
    /// day never counts, whatever the hour). Made on Monday at 08:00 with 3 working days:
    /// Tuesday, Wednesday, Thursday, so before Friday 00:00; made on Friday at 18:00 or on
    /// the weekend: before Thursday 00:00.
    pub fn start_by(&self, created: Timestamp) -> Timestamp {
        let day = self.day_of(created);
        self.end_of_day(self.working_day_after(day, self.start_working_days))
    }

    /// When an order made at `created` must be done: `finish_days` calendar days later at the
    /// same local time (across a daylight-saving change the span is an hour longer or
    /// shorter; a local time that does not exist that day moves forward by the gap). Never
    /// before [`Calendar::start_by`] (which only a configuration with a short `finish_days`
    /// and long holidays could otherwise cause).
    pub fn done_by(&self, created: Timestamp) -> Timestamp {
        let done = created
            .to_zoned(self.tz().clone())
            .checked_add(i64::from(self.finish_days).days())
            .map(|z| z.timestamp())
            .unwrap_or(Timestamp::MAX);
        done.max(self.start_by(created))
    }

    /// Both deadlines: `(start_by, done_by)`.
    pub fn deadlines(&self, created: Timestamp) -> (Timestamp, Timestamp) {
        (self.start_by(created), self.done_by(created))
    }

    /// Whether any holiday is configured in `year` (a list that does not cover the year
    /// silently counts its holidays as working days).
    pub fn covers(&self, year: i16) -> bool {
        self.days.covers(year)
    }
}

#[cfg(test)]
mod tests {
    use jiff::civil::{Weekday, date};

    use super::*;

    fn stockholm() -> TimeZone {
        TimeZone::get("Europe/Stockholm").unwrap()
    }

    fn cal() -> Calendar {
        Calendar::new(&WorkOrderOptions::default(), stockholm())
    }

    /// A local Stockholm time.
    fn local(s: &str) -> Timestamp {
        s.parse::<jiff::civil::DateTime>()
            .unwrap()
            .to_zoned(stockholm())
            .unwrap()
            .timestamp()
    }

    /// Easter Sunday (anonymous Gregorian algorithm), to check the default list by rule.
    fn easter(y: i16) -> Date {
        let y32 = i32::from(y);
        let a = y32 % 19;
        let b = y32 / 100;
        let c = y32 % 100;
        let d = b / 4;
        let e = b % 4;
        let f = (b + 8) / 25;
        let g = (b - f + 1) / 3;
        let h = (19 * a + b - d - g + 15) % 30;
        let i = c / 4;
        let k = c % 4;
        let l = (32 + 2 * e + 2 * i - h - k) % 7;
        let m = (a + 11 * h + 22 * l) / 451;
        let month = (h + l - 7 * m + 114) / 31;
        let day = (h + l - 7 * m + 114) % 31 + 1;
        date(y, month as i8, day as i8)
    }

    /// The first `weekday` on or after `d`.
    fn on_or_after(d: Date, weekday: Weekday) -> Date {
        (0..7)
            .map(|i| d.checked_add(i.days()).unwrap())
            .find(|x| x.weekday() == weekday)
            .unwrap()
    }

    fn by_rule(y: i16) -> Vec<Date> {
        let e = easter(y);
        let plus = |n: i64| e.checked_add(n.days()).unwrap();
        let mut v = vec![
            date(y, 1, 1),
            date(y, 1, 6),
            plus(-2),
            e,
            plus(1),
            date(y, 5, 1),
            plus(39),
            plus(49),
            date(y, 6, 6),
            on_or_after(date(y, 6, 19), Weekday::Friday),
            on_or_after(date(y, 6, 20), Weekday::Saturday),
            on_or_after(date(y, 10, 31), Weekday::Saturday),
            date(y, 12, 24),
            date(y, 12, 25),
            date(y, 12, 26),
            date(y, 12, 31),
        ];
        v.sort();
        v
    }

    #[test]
    fn default_holidays_follow_the_rules() {
        let mut both = by_rule(2026);
        both.extend(by_rule(2027));
        assert_eq!(swedish_holidays_2026_2027(), both);
        assert_eq!(easter(2026), date(2026, 4, 5));
        assert_eq!(easter(2027), date(2027, 3, 28));
        let c = cal();
        assert!(c.covers(2026) && c.covers(2027) && !c.covers(2028));
    }

    #[test]
    fn working_days() {
        let c = cal();
        assert!(c.is_working_day(date(2026, 3, 2))); // Monday
        assert!(!c.is_working_day(date(2026, 3, 7))); // Saturday
        assert!(!c.is_working_day(date(2026, 3, 8))); // Sunday
        assert!(!c.is_working_day(date(2026, 12, 24))); // julafton, a Thursday
        assert!(!c.is_working_day(date(2026, 5, 14))); // Ascension Day
        assert_eq!(
            c.working_day_after(date(2026, 3, 6), 1),
            date(2026, 3, 9),
            "Friday -> Monday"
        );
        assert_eq!(c.working_day_after(date(2026, 3, 6), 0), date(2026, 3, 6));
    }

    #[test]
    fn start_by_counts_working_days_after_the_order_day() {
        let c = cal();
        // Monday 08:00 -> Tue, Wed, Thu -> before Friday 00:00.
        assert_eq!(
            c.start_by(local("2026-03-02T08:00")),
            local("2026-03-06T00:00")
        );
        // Friday evening, Saturday and Sunday all count Mon, Tue, Wed.
        for made in [
            "2026-03-06T18:00",
            "2026-03-06T23:59:59",
            "2026-03-07T00:00",
            "2026-03-08T12:00",
        ] {
            assert_eq!(c.start_by(local(made)), local("2026-03-12T00:00"), "{made}");
        }
        // Friday 08:00 is the same as Friday evening: the order's day never counts.
        assert_eq!(
            c.start_by(local("2026-03-06T08:00")),
            local("2026-03-12T00:00")
        );
    }

    #[test]
    fn midnight_decides_the_order_day() {
        let c = cal();
        // Monday 23:59:59 local: Tue, Wed, Thu -> Friday 00:00.
        assert_eq!(
            c.start_by(local("2026-03-02T23:59:59")),
            local("2026-03-06T00:00")
        );
        // Tuesday 00:00 local: Wed, Thu, Fri -> Saturday 00:00.
        assert_eq!(
            c.start_by(local("2026-03-03T00:00")),
            local("2026-03-07T00:00")
        );
        // The local day decides, not the UTC day: Monday 23:30 UTC is Tuesday 00:30 in
        // Stockholm.
        let t: Timestamp = "2026-03-02T23:30:00Z".parse().unwrap();
        assert_eq!(c.start_by(t), local("2026-03-07T00:00"));
        let utc = Calendar::new(&WorkOrderOptions::default(), TimeZone::UTC);
        assert_eq!(
            utc.start_by(t),
            "2026-03-06T00:00:00Z".parse::<Timestamp>().unwrap()
        );
    }

    #[test]
    fn holidays_are_skipped() {
        let c = cal();
        // Wednesday 23 December 2026: 24, 25 (holidays), 26, 27 (weekend), Mon 28, Tue 29,
        // Wed 30 -> before Thursday 31 December 00:00.
        assert_eq!(
            c.start_by(local("2026-12-23T10:00")),
            local("2026-12-31T00:00")
        );
        // Wednesday 30 December 2026: 31 (eve), 1 Jan (holiday), weekend, Mon 4, Tue 5,
        // 6 Jan (holiday), Thu 7 -> before Friday 8 January 00:00.
        assert_eq!(
            c.start_by(local("2026-12-30T10:00")),
            local("2027-01-08T00:00")
        );
        // Maundy Thursday 2 April 2026: Good Friday, Easter weekend, Easter Monday, then Tue
        // 7, Wed 8, Thu 9 -> before Friday 10 April 00:00.
        assert_eq!(
            c.start_by(local("2026-04-02T09:00")),
            local("2026-04-10T00:00")
        );
        // Without the holidays the same order would start by Wednesday 8 April 00:00.
        let none = WorkOrderOptions {
            holidays: Vec::new(),
            ..WorkOrderOptions::default()
        };
        let bare = Calendar::new(&none, stockholm());
        assert_eq!(
            bare.start_by(local("2026-04-02T09:00")),
            local("2026-04-08T00:00")
        );
    }

    #[test]
    fn done_by_is_ten_calendar_days_at_the_same_local_time() {
        let c = cal();
        assert_eq!(
            c.done_by(local("2026-03-02T08:00")),
            local("2026-03-12T08:00")
        );
        // Over the holidays: calendar days, holidays do not stretch it.
        assert_eq!(
            c.done_by(local("2026-12-23T10:00")),
            local("2027-01-02T10:00")
        );
    }

    #[test]
    fn daylight_saving() {
        let c = cal();
        // Spring forward on Sunday 29 March 2026 (02:00 -> 03:00): 10 days from 20 March
        // 12:00 CET is 30 March 12:00 CEST, 239 hours.
        let made = local("2026-03-20T12:00");
        let done = c.done_by(made);
        assert_eq!(done, local("2026-03-30T12:00"));
        assert_eq!(done.duration_since(made).as_hours(), 239);
        // A local time that does not exist on the day moves forward by the gap.
        assert_eq!(
            c.done_by(local("2026-03-19T02:30")),
            "2026-03-29T01:30:00Z".parse::<Timestamp>().unwrap()
        );
        // Fall back on Sunday 25 October 2026: 241 hours.
        let made = local("2026-10-20T12:00");
        let done = c.done_by(made);
        assert_eq!(done, local("2026-10-30T12:00"));
        assert_eq!(done.duration_since(made).as_hours(), 241);
        // The end of a working day is local midnight on both sides of a change: Thursday
        // 26 March 2026 -> Fri 27, Mon 30, Tue 31 -> Wednesday 1 April 00:00 CEST (22:00 UTC).
        assert_eq!(
            c.start_by(local("2026-03-26T10:00")),
            "2026-03-31T22:00:00Z".parse::<Timestamp>().unwrap()
        );
        // Made on Saturday 24 October 2026 (CEST): Mon, Tue, Wed -> Thursday 29 October
        // 00:00 CET (23:00 UTC).
        assert_eq!(
            c.start_by(local("2026-10-24T10:00")),
            "2026-10-28T23:00:00Z".parse::<Timestamp>().unwrap()
        );
    }

    #[test]
    fn done_by_never_before_start_by_and_the_calendar_ends() {
        let short = WorkOrderOptions {
            start_working_days: 10,
            finish_days: 1,
            ..WorkOrderOptions::default()
        };
        let c = Calendar::new(&short, stockholm());
        let made = local("2026-03-02T08:00");
        assert_eq!(c.done_by(made), c.start_by(made));
        // Every weekday a holiday for a while: still bounded, and found after them.
        let opts = WorkOrderOptions {
            holidays: (0..40)
                .map(|i| date(2026, 3, 2).checked_add(i.days()).unwrap())
                .collect(),
            ..WorkOrderOptions::default()
        };
        let c = Calendar::new(&opts, stockholm());
        assert_eq!(c.working_day_after(date(2026, 3, 1), 1), date(2026, 4, 13));
        // The end of time does not panic.
        let end = cal();
        assert_eq!(end.start_by(Timestamp::MAX), Timestamp::MAX);
        assert_eq!(end.done_by(Timestamp::MAX), Timestamp::MAX);
    }
}
