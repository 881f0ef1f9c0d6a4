//! The language of the report's labels (`lang`, on the report, breakdown and completeness
//! answers and on the exports): Chinese by default, what township and county offices file, or
//! English. Only labels change; codes, keys and figures are the same in both.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::report::counts::COUNTS;
use crate::report::indicators::Indicator;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum Lang {
    #[default]
    #[serde(rename = "zh-CN")]
    Zh,
    #[serde(rename = "en")]
    En,
}

impl Lang {
    /// `zh-CN` or `en`.
    pub fn parse(s: &str) -> Option<Lang> {
        serde_json::from_value(serde_json::Value::from(s)).ok()
    }

    /// The label in this language of a pair.
    pub fn pick(self, zh: &'static str, en: &'static str) -> &'static str {
        match self {
            Lang::Zh => zh,
            Lang::En => en,
        }
    }

    pub fn indicator(self, i: Indicator) -> &'static str {
        self.pick(i.zh(), i.en())
    }

    /// The other name of an indicator in this language, if it has one (计划生育率).
    pub fn indicator_also(self, i: Indicator) -> Option<&'static str> {
        match self {
            Lang::Zh => i.also_zh(),
            Lang::En => i.also_en(),
        }
    }

    /// The label with the other name beside it, for the exports' headers and rows:
    /// `符合政策生育率/计划生育率`, `policy-compliant birth rate / family planning rate`.
    pub fn indicator_full(self, i: Indicator) -> String {
        match (self.indicator_also(i), self) {
            (None, _) => self.indicator(i).to_string(),
            (Some(a), Lang::Zh) => format!("{}/{a}", self.indicator(i)),
            (Some(a), Lang::En) => format!("{} / {a}", self.indicator(i)),
        }
    }
}

/// The labels of a report's indicators and counts in one language.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct Labels {
    pub lang: Lang,
    /// By indicator code.
    pub indicators: BTreeMap<&'static str, &'static str>,
    /// Other names of the same figures, by indicator code (`policy_compliant_birth_rate`:
    /// 计划生育率 / family planning rate).
    pub indicator_aliases: BTreeMap<&'static str, &'static str>,
    /// By count key.
    pub counts: BTreeMap<&'static str, &'static str>,
}

impl Labels {
    pub fn new(lang: Lang) -> Labels {
        Labels {
            lang,
            indicators: Indicator::ALL
                .into_iter()
                .map(|i| (i.code(), lang.indicator(i)))
                .collect(),
            indicator_aliases: Indicator::ALL
                .into_iter()
                .filter_map(|i| Some((i.code(), lang.indicator_also(i)?)))
                .collect(),
            counts: COUNTS
                .iter()
                .map(|d| (d.key, lang.pick(d.zh, d.en)))
                .collect(),
        }
    }
}

impl Default for Labels {
    fn default() -> Labels {
        Labels::new(Lang::default())
    }
}

/// The labels of the completeness answer's figures and submission statuses, by field name and
/// status.
pub fn completeness_labels(lang: Lang) -> BTreeMap<&'static str, &'static str> {
    [
        ("villages", "村数", "villages"),
        ("submitted", "已上报", "submitted"),
        ("on_time", "按时上报", "on time"),
        ("late", "逾期上报", "late"),
        ("missing", "未上报", "missing"),
        ("approved", "已审核", "approved"),
        ("locked", "已锁定", "locked"),
        ("returned", "已退回", "returned"),
        ("completeness", "上报率", "completeness"),
        ("timeliness", "及时率", "timeliness"),
    ]
    .into_iter()
    .map(|(k, zh, en)| (k, lang.pick(zh, en)))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_label_in_both_languages() {
        for lang in [Lang::Zh, Lang::En] {
            let l = Labels::new(lang);
            assert_eq!(l.indicators.len(), Indicator::ALL.len());
            assert_eq!(l.counts.len(), COUNTS.len());
            assert!(l.counts.values().all(|v| !v.is_empty()));
        }
        assert_eq!(Labels::default().counts["births"], "出生人数");
        assert_eq!(Labels::new(Lang::En).counts["births"], "births");
        assert_eq!(
            serde_json::to_value(Lang::Zh).unwrap(),
            serde_json::json!("zh-CN")
        );
        assert_eq!(Lang::parse("en"), Some(Lang::En));
        assert_eq!(Lang::parse("zh-CN"), Some(Lang::Zh));
        assert_eq!(Lang::parse("fr"), None);
        let p = Indicator::PolicyCompliantBirthRate;
        assert_eq!(Labels::default().indicator_aliases[p.code()], "计划生育率");
        assert_eq!(
            Labels::new(Lang::En).indicator_aliases[p.code()],
            "family planning rate"
        );
        assert_eq!(Lang::Zh.indicator_full(p), "符合政策生育率/计划生育率");
        assert_eq!(
            Lang::En.indicator_full(p),
            "policy-compliant birth rate / family planning rate"
        );
        assert_eq!(Lang::Zh.indicator_full(Indicator::CheckRate), "查证率");
    }
}
