//! Ages: the one rule for a person's age on a day, used by the logic checks, the report's
//! indicators and the demo generator.

use chrono::{Datelike, NaiveDate};

/// Age in completed years (周岁) on `at`; negative when `at` is before `birth`. Someone born on
/// 29 February has a birthday on 1 March in common years.
pub fn age_on(birth: NaiveDate, at: NaiveDate) -> i32 {
    let before_birthday = (at.month(), at.day()) < (birth.month(), birth.day());
    at.year() - birth.year() - i32::from(before_birthday)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn age_counts_completed_years() {
        let birth = date(1990, 6, 15);
        assert_eq!(age_on(birth, date(2005, 6, 14)), 14);
        assert_eq!(age_on(birth, date(2005, 6, 15)), 15);
        assert_eq!(age_on(birth, date(1990, 6, 14)), -1);
        let leap = date(2000, 2, 29);
        assert_eq!(age_on(leap, date(2015, 2, 28)), 14);
        assert_eq!(age_on(leap, date(2015, 3, 1)), 15);
        assert_eq!(age_on(leap, date(2016, 2, 29)), 16);
    }
}
