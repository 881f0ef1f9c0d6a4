//! Realistic Chinese personal names for demo data, as seen in the ledgers of rural north China
//! for people born between 1950 and 2025: a surname weighted by how common it is, and a given
//! name of one or two characters.
//!
//! Everything is drawn from the caller's RNG, so a seeded RNG gives the same village every run.

use std::sync::OnceLock;

use rand::distributions::{Distribution, WeightedIndex};
use rand::Rng;

/// Surnames with rough weights (per mille of people) for villages of Hebei and its neighbours:
/// the exact shares do not matter, the skew does (王, 李, 张, 刘 alone carry over a quarter of
/// the population; the southern 陈, 黄, 林 are rarer here than nationally). The long tail of rarer
/// surnames is left out, so the listed ones come out proportionally more often.
#[rustfmt::skip]
const SURNAMES: &[(&str, u32)] = &[
    ("王", 80), ("李", 78), ("张", 72), ("刘", 62), ("赵", 30), ("杨", 30), ("陈", 25),
    ("高", 16), ("郭", 16), ("马", 16), ("孙", 16), ("周", 13), ("吴", 12), ("徐", 11),
    ("朱", 10), ("胡", 10), ("黄", 8), ("韩", 10), ("梁", 8), ("宋", 8), ("郑", 7),
    ("何", 5), ("林", 3), ("罗", 4), ("田", 8), ("董", 8), ("冯", 7), ("曹", 6),
    ("许", 6), ("谢", 4), ("唐", 4), ("邓", 4), ("彭", 4), ("肖", 4), ("袁", 5),
    ("于", 8), ("蒋", 4), ("蔡", 3), ("贾", 7), ("魏", 6), ("吕", 5), ("丁", 5),
    ("任", 5), ("姚", 4), ("卢", 4), ("崔", 6), ("杜", 5), ("范", 5), ("石", 5),
    ("侯", 5), ("孟", 5), ("白", 5), ("郝", 5), ("牛", 3), ("岳", 3), ("薛", 4),
    ("常", 3), ("史", 4), ("闫", 4), ("苏", 4), ("程", 4), ("齐", 3), ("安", 3),
    ("耿", 2), ("庞", 2), ("靳", 2),
];

/// Characters for the two places of a given name. Split by place so that common pairs come out
/// (建军, 国强, 秀英, 桂兰 next to the later 子轩, 浩然, 梦琪, 雨萱) and a character never
/// repeats within a name; the second place also serves single-character names (李强, 王静).
struct GivenNames {
    first: &'static str,
    second: &'static str,
}

const MALE: GivenNames = GivenNames {
    first: "建国志永立文海振明德春金宝俊子浩宇嘉少树长新红卫保占连银铁庆",
    second: "军民强伟华林生平东刚峰磊涛鹏超杰轩博辉亮斌成龙山忠兴福贵利勇江波奇阳泽然柱",
};

const FEMALE: GivenNames = GivenNames {
    first: "秀桂玉淑凤春丽海晓雪美彩翠素金小梦雨思佳子诗亚艳红云",
    second: "英兰芳珍霞梅琴萍莉娜婷敏静娟燕荣花华月洁颖涵彤萱琪悦怡欣芬玲",
};

/// Share of single-character given names, common in every generation (王强, 张静).
const SINGLE_CHAR_SHARE: f64 = 0.15;

/// A full name: surname then given name, e.g. 王建军, 李秀英, 张静.
pub fn full_name(rng: &mut impl Rng, male: bool) -> String {
    let pool = if male { &MALE } else { &FEMALE };
    let mut name = String::from(surname(rng));
    if !rng.gen_bool(SINGLE_CHAR_SHARE) {
        name.push(pick(rng, pool.first));
    }
    name.push(pick(rng, pool.second));
    name
}

fn surname(rng: &mut impl Rng) -> &'static str {
    // Built once: the cumulative table of the weights never changes.
    static WEIGHTS: OnceLock<WeightedIndex<u32>> = OnceLock::new();
    let weights = WEIGHTS.get_or_init(|| {
        WeightedIndex::new(SURNAMES.iter().map(|&(_, w)| w)).expect("positive weights")
    });
    SURNAMES[weights.sample(rng)].0
}

fn pick(rng: &mut impl Rng, chars: &str) -> char {
    let i = rng.gen_range(0..chars.chars().count());
    chars.chars().nth(i).expect("index below the count")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use std::collections::{BTreeMap, BTreeSet};

    fn names(seed: u64, n: usize) -> Vec<String> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|i| full_name(&mut rng, i % 2 == 0)).collect()
    }

    #[test]
    fn same_seed_same_names() {
        assert_eq!(names(42, 200), names(42, 200));
        assert_ne!(names(42, 200), names(43, 200));
    }

    #[test]
    fn names_are_surname_and_given_name_from_the_right_pool() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for i in 0..2_000 {
            let male = i % 2 == 0;
            let pool = if male { &MALE } else { &FEMALE };
            let name = full_name(&mut rng, male);
            let chars: Vec<char> = name.chars().collect();
            assert!((2..=3).contains(&chars.len()), "{name}");
            assert!(
                SURNAMES.iter().any(|(s, _)| s.starts_with(chars[0])),
                "{name}"
            );
            assert!(pool.second.contains(chars[chars.len() - 1]), "{name}");
            if chars.len() == 3 {
                assert!(pool.first.contains(chars[1]), "{name}");
            }
        }
    }

    #[test]
    fn common_surnames_are_common() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut counts: BTreeMap<String, u32> = BTreeMap::new();
        let mut single = 0;
        let n = 20_000;
        for _ in 0..n {
            let name = full_name(&mut rng, false);
            *counts.entry(name.chars().take(1).collect()).or_default() += 1;
            single += u32::from(name.chars().count() == 2);
        }
        let count = |s: &str| counts.get(s).copied().unwrap_or(0);
        // 王 has 80 of 743 parts (about 2,150 expected), 林 3.
        assert!(count("王") > 1_500, "{}", count("王"));
        assert!(count("王") > 10 * count("林"));
        assert!(counts.len() >= 60);
        let share = f64::from(single) / f64::from(n);
        assert!((0.12..0.18).contains(&share), "{share}");
    }

    #[test]
    fn pools_are_large_and_without_repeats() {
        let surnames: BTreeSet<_> = SURNAMES.iter().map(|(s, _)| *s).collect();
        assert_eq!(surnames.len(), SURNAMES.len());
        assert!(surnames.len() >= 40);
        for pool in [&MALE, &FEMALE] {
            let first: BTreeSet<char> = pool.first.chars().collect();
            let second: BTreeSet<char> = pool.second.chars().collect();
            assert_eq!(first.len(), pool.first.chars().count());
            assert_eq!(second.len(), pool.second.chars().count());
            assert!(first.is_disjoint(&second));
            assert!(first.len() >= 20 && second.len() >= 30);
        }
    }
}
