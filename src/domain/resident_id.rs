//! Mainland resident ID numbers (居民身份证号码, GB 11643-1999): 6 digits of region code,
//! 8 digits of birth date (`YYYYMMDD`), a 3-digit sequence whose last digit gives the sex
//! (odd male, even female), and an ISO 7064 MOD 11-2 check character (`0`-`9` or `X`).
//!
//! An ID number is personal data: [`ResidentId`] never prints its value through `Debug` or
//! `Display`, so it cannot leak into logs by accident; [`ResidentId::as_str`] is the one explicit
//! way to read it, and [`ResidentId::masked`] the form for lists.

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, NaiveDate};

/// Length of a resident ID number, check character included.
pub const LEN: usize = 18;

/// Longest ID number field a record may carry: room for a mistyped number (a digit too many,
/// a space) to be stored and flagged, while a long string is still a type error.
pub const MAX_TYPED_LEN: usize = 24;

/// MOD 11-2 weights of the first 17 digits (2^(18-i) mod 11 for position i, 1-based).
const WEIGHTS: [u32; LEN - 1] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];

/// Check character for each remainder of the weighted sum modulo 11.
const CHECK_CHARS: [char; 11] = ['1', '0', 'X', '9', '8', '7', '6', '5', '4', '3', '2'];

/// Why a string is not a resident ID number. The error never carries the input, which is
/// personal data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdError {
    /// Not exactly 18 characters.
    Length,
    /// Not 17 digits followed by a digit or `X`.
    Characters,
    /// Well formed, but the check character does not match the first 17 digits.
    CheckDigit,
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdError::Length => "a resident ID number has 18 characters",
            IdError::Characters => "a resident ID number is 17 digits followed by a digit or X",
            IdError::CheckDigit => "the resident ID number's check digit does not match",
        })
    }
}

impl std::error::Error for IdError {}

/// A well-formed resident ID number with a correct check character, stored upper-case.
///
/// The embedded birth date is *not* validated by [`ResidentId::parse`]: a number whose date does
/// not exist is still a number someone was issued or typed, and comparing it with the person's
/// record is a logic check (see `domain::checks`), not a parse error.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResidentId(String);

impl ResidentId {
    /// Parses an 18-character ID number, normalising a lower-case `x` check character.
    /// Surrounding whitespace is not trimmed: callers decide what input they accept.
    pub fn parse(s: &str) -> Result<ResidentId, IdError> {
        if s.chars().count() != LEN {
            return Err(IdError::Length);
        }
        // Only ASCII is acceptable from here on, which makes byte indexing safe below.
        if !s.is_ascii() {
            return Err(IdError::Characters);
        }
        let normalised = s.to_ascii_uppercase();
        let expected = check_digit(&normalised[..LEN - 1]).ok_or(IdError::Characters)?;
        let last = char::from(normalised.as_bytes()[LEN - 1]);
        if !(last.is_ascii_digit() || last == 'X') {
            return Err(IdError::Characters);
        }
        if last != expected {
            return Err(IdError::CheckDigit);
        }
        Ok(ResidentId(normalised))
    }

    /// The full number. The explicit accessor for personal data: use it only where the value is
    /// needed (storage, duplicate search, roles allowed to see it), never for logging.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The birth date embedded in characters 7-14, or `None` when those digits are not a date.
    pub fn birth_date(&self) -> Option<NaiveDate> {
        let digits = |range: std::ops::Range<usize>| self.0[range].parse::<u32>().ok();
        let year = i32::try_from(digits(6..10)?).ok()?;
        NaiveDate::from_ymd_opt(year, digits(10..12)?, digits(12..14)?)
    }

    /// `"male"` or `"female"` (the values of `entities::SEX`), from the parity of the 17th
    /// character.
    pub fn sex(&self) -> &'static str {
        // Parse guarantees the 17th character is a digit.
        if self.0.as_bytes()[LEN - 2] % 2 == 1 {
            "male"
        } else {
            "female"
        }
    }

    /// The form shown in lists: the region code and the last four characters, e.g.
    /// `130131********123X` (see [`ResidentId::mask`]).
    pub fn masked(&self) -> String {
        ResidentId::mask(&self.0)
    }

    /// The one masking rule for whatever an ID-number field holds (lists, exports, conflict
    /// values), valid or not. A valid number shows its region code and last four characters,
    /// upper-cased like [`ResidentId::parse`]: `130131********123X`. Any other value of at
    /// least [`MASK_MIN_LEN`] characters (a first-generation 15-digit number, a mistyped one)
    /// shows its first six and last four characters, the rest starred; a shorter value is
    /// starred whole, since six and four characters of it would give away most of it.
    /// Characters, not bytes, are counted.
    pub fn mask(value: &str) -> String {
        if let Ok(id) = ResidentId::parse(value) {
            return mask_chars(id.as_str());
        }
        mask_chars(value)
    }
}

/// Shortest value [`ResidentId::mask`] shows part of: the length of a first-generation
/// (15-digit) ID number. Below it every character is starred.
pub const MASK_MIN_LEN: usize = 15;

fn mask_chars(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    let n = chars.len();
    if n < MASK_MIN_LEN {
        return "*".repeat(n);
    }
    let head: String = chars[..6].iter().collect();
    let tail: String = chars[n - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(n - 10))
}

impl FromStr for ResidentId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ResidentId::parse(s)
    }
}

/// Redacted so that an ID number inside a logged struct or error never reaches the logs.
impl fmt::Debug for ResidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Redacted for the same reason as `Debug`; use [`ResidentId::as_str`] or
/// [`ResidentId::masked`] to show the number on purpose.
impl fmt::Display for ResidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The ISO 7064 MOD 11-2 check character for the first 17 characters of an ID number, or
/// `None` unless `first17` is exactly 17 ASCII digits.
pub fn check_digit(first17: &str) -> Option<char> {
    if first17.len() != LEN - 1 || !first17.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let sum: u32 = first17
        .bytes()
        .zip(WEIGHTS)
        .map(|(b, w)| u32::from(b - b'0') * w)
        .sum();
    Some(CHECK_CHARS[(sum % 11) as usize])
}

/// Builds a valid ID number for demo data. The last digit of `seq3` is moved by one where needed
/// so that its parity matches `male` (odd male, even female).
///
/// # Panics
///
/// If `region6` is not 6 ASCII digits, `seq3` is above 999 or `birth` is outside years
/// 0000-9999: demo generators pass constants, so a bad one is a programming error.
pub fn generate(region6: &str, birth: NaiveDate, seq3: u16, male: bool) -> String {
    assert!(
        region6.len() == 6 && region6.bytes().all(|b| b.is_ascii_digit()),
        "region code must be 6 digits"
    );
    assert!(seq3 <= 999, "sequence must have 3 digits");
    assert!(
        (0..=9999).contains(&birth.year()),
        "birth year must have 4 digits"
    );
    // XOR 1 moves an even number up or an odd one down by one, keeping it within 0..=999.
    let seq = if (seq3 % 2 == 1) == male {
        seq3
    } else {
        seq3 ^ 1
    };
    let first17 = format!(
        "{region6}{:04}{:02}{:02}{seq:03}",
        birth.year(),
        birth.month(),
        birth.day()
    );
    let check = check_digit(&first17).expect("17 digits by construction");
    format!("{first17}{check}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn accepts_valid_numbers() {
        // The example of GB 11643-1999 (check character X) and a Hebei number computed by hand:
        // weighted sum of 13013119900101123 is 168 = 15 * 11 + 3, remainder 3 -> '9'.
        for (s, birth, sex) in [
            ("11010519491231002X", date(1949, 12, 31), "female"),
            ("440524188001010014", date(1880, 1, 1), "male"),
            ("130131199001011239", date(1990, 1, 1), "male"),
        ] {
            let id = ResidentId::parse(s).unwrap();
            assert_eq!(id.as_str(), s);
            assert_eq!(id.birth_date(), Some(birth));
            assert_eq!(id.sex(), sex);
        }
    }

    #[test]
    fn normalises_lower_case_x() {
        let id = ResidentId::parse("11010519491231002x").unwrap();
        assert_eq!(id.as_str(), "11010519491231002X");
        assert_eq!(id, "11010519491231002X".parse().unwrap());
    }

    #[test]
    fn rejects_wrong_check_digit() {
        assert_eq!(
            ResidentId::parse("110105194912310021"),
            Err(IdError::CheckDigit)
        );
        assert_eq!(
            ResidentId::parse("440524188001010015"),
            Err(IdError::CheckDigit)
        );
    }

    #[test]
    fn rejects_wrong_length() {
        for s in [
            "",
            "11010519491231002",
            "11010519491231002X0",
            "110105491231002",
        ] {
            assert_eq!(ResidentId::parse(s), Err(IdError::Length), "{s:?}");
        }
    }

    #[test]
    fn rejects_letters_and_other_characters() {
        for s in [
            "1101051949123100AX",
            "X10105194912310021",
            "11010519491231002Y",
            "11010519491231002 ",
            "11010519491231002Ｘ", // full-width X: 18 characters, not ASCII
            "１１０１０５１９４９１２３１００２Ｘ",
        ] {
            assert_eq!(ResidentId::parse(s), Err(IdError::Characters), "{s:?}");
        }
    }

    #[test]
    fn impossible_embedded_date_parses_but_has_no_birth_date() {
        let first17 = "13013119901345123";
        let s = format!("{first17}{}", check_digit(first17).unwrap());
        let id = ResidentId::parse(&s).unwrap();
        assert_eq!(id.birth_date(), None);
    }

    #[test]
    fn never_prints_the_number() {
        let id = ResidentId::parse("11010519491231002X").unwrap();
        assert_eq!(format!("{id}"), "[redacted]");
        assert_eq!(format!("{id:?}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(&id)), "Some([redacted])");
    }

    #[test]
    fn masks_all_but_region_and_last_four() {
        let id = ResidentId::parse("11010519491231002X").unwrap();
        assert_eq!(id.masked(), "110105********002X");
        assert_eq!(id.masked().chars().count(), LEN);
        assert_eq!(ResidentId::mask("11010519491231002X"), "110105********002X");
    }

    #[test]
    fn mask_of_a_valid_number_is_upper_cased() {
        assert_eq!(ResidentId::mask("11010519491231002x"), "110105********002X");
    }

    #[test]
    fn mask_of_a_fifteen_digit_number_keeps_region_and_last_four() {
        assert_eq!(ResidentId::mask("130131900101123"), "130131*****1123");
    }

    #[test]
    fn mask_of_a_short_value_stars_everything() {
        for (s, masked) in [
            ("", ""),
            ("123", "***"),
            ("1234567890", "**********"),
            ("13013119900101", "**************"),
        ] {
            assert_eq!(ResidentId::mask(s), masked, "{s:?}");
        }
    }

    #[test]
    fn mask_of_a_malformed_value_keeps_only_its_ends() {
        // Wrong check digit, a letter inside, a digit too many, full-width characters.
        for (s, masked) in [
            ("110105194912310021", "110105********0021"),
            ("1101051949123100AX", "110105********00AX"),
            ("1101051949123100210", "110105*********0210"),
            (
                "１１０１０５１９４９１２３１００２Ｘ",
                "１１０１０５********００２Ｘ",
            ),
        ] {
            assert_eq!(ResidentId::mask(s), masked, "{s:?}");
            assert_eq!(ResidentId::mask(s).chars().count(), s.chars().count());
        }
    }

    proptest! {
        /// Never more than ten characters of a value show, and never more than a third of a
        /// short one (none at all).
        #[test]
        fn mask_hides_the_middle(s in "\\PC{0,30}") {
            let m = ResidentId::mask(&s);
            let n = s.chars().count();
            prop_assert_eq!(m.chars().count(), n);
            let shown = m.chars().zip(s.chars()).filter(|(a, b)| a == b && *a != '*').count();
            prop_assert!(shown <= 10);
            if n < MASK_MIN_LEN {
                prop_assert_eq!(shown, 0);
            }
        }
    }

    #[test]
    fn check_digit_needs_17_digits() {
        assert_eq!(check_digit("11010519491231002"), Some('X'));
        assert_eq!(check_digit("1101051949123100"), None);
        assert_eq!(check_digit("1101051949123100A"), None);
    }

    #[test]
    fn generate_keeps_sex_and_sequence() {
        let birth = date(2000, 2, 29);
        let male = generate("130131", birth, 122, true);
        assert_eq!(&male[..17], "13013120000229123");
        let female = generate("130131", birth, 999, false);
        assert_eq!(&female[14..17], "998");
        assert_eq!(ResidentId::parse(&female).unwrap().sex(), "female");
    }

    proptest! {
        #[test]
        fn generated_numbers_are_valid(
            region in 110_000u32..=820_000,
            days in 0i64..60_000,
            seq in 0u16..=999,
            male: bool,
        ) {
            let birth = date(1900, 1, 1) + chrono::Duration::days(days);
            let s = generate(&format!("{region:06}"), birth, seq, male);
            let id = ResidentId::parse(&s).unwrap();
            prop_assert_eq!(id.birth_date(), Some(birth));
            prop_assert_eq!(id.sex(), if male { "male" } else { "female" });
        }

        #[test]
        fn one_changed_digit_is_always_caught(pos in 0usize..17, delta in 1u8..10) {
            let mut bytes = b"130131199001011239".to_vec();
            bytes[pos] = b'0' + (bytes[pos] - b'0' + delta) % 10;
            let s = String::from_utf8(bytes).unwrap();
            prop_assert_eq!(ResidentId::parse(&s), Err(IdError::CheckDigit));
        }
    }
}
