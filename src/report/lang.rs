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
}

/// The labels of a report's indicators and counts in one language.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct Labels {
    pub lang: Lang,
    /// By indicator code.
    pub indicators: BTreeMap<&'static str, &'static str>,
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
    }
}
