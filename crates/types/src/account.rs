//! Plans (what an account may own) and rate tiers (how fast it may call), CONTRACT §4–5.

use serde::{Deserialize, Serialize};

/// What an account may own. Bounds are configurable; these are the names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Plan {
    #[default]
    Free,
    Pro,
    Enterprise,
}

impl Plan {
    pub const NAMES: &'static [&'static str] = &["free", "pro", "enterprise"];

    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Free => "free",
            Plan::Pro => "pro",
            Plan::Enterprise => "enterprise",
        }
    }

    pub fn parse(s: &str) -> Option<Plan> {
        match s {
            "free" => Some(Plan::Free),
            "pro" => Some(Plan::Pro),
            "enterprise" => Some(Plan::Enterprise),
            _ => None,
        }
    }
}

/// A rate tier: `1`, `3`, `5` or `"unlimited"` on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Tier {
    #[default]
    T1,
    T3,
    T5,
    Unlimited,
}

impl Tier {
    pub const NAMES: &'static [&'static str] = &["1", "3", "5", "unlimited"];

    /// Stable text form used in storage and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::T1 => "1",
            Tier::T3 => "3",
            Tier::T5 => "5",
            Tier::Unlimited => "unlimited",
        }
    }

    pub fn parse(s: &str) -> Option<Tier> {
        match s {
            "1" => Some(Tier::T1),
            "3" => Some(Tier::T3),
            "5" => Some(Tier::T5),
            "unlimited" => Some(Tier::Unlimited),
            _ => None,
        }
    }

    /// Accepts the wire forms: the numbers 1/3/5, their strings, or `"unlimited"`.
    pub fn from_json(v: &serde_json::Value) -> Option<Tier> {
        match v {
            serde_json::Value::Number(n) => n.as_u64().and_then(|n| Tier::parse(&n.to_string())),
            serde_json::Value::String(s) => Tier::parse(s),
            _ => None,
        }
    }

    /// The wire form: a number for 1/3/5, the string for unlimited.
    pub fn to_json(self) -> serde_json::Value {
        match self {
            Tier::T1 => 1.into(),
            Tier::T3 => 3.into(),
            Tier::T5 => 5.into(),
            Tier::Unlimited => "unlimited".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_round_trip_through_their_wire_forms() {
        for t in [Tier::T1, Tier::T3, Tier::T5, Tier::Unlimited] {
            assert_eq!(Tier::from_json(&t.to_json()), Some(t));
            assert_eq!(Tier::parse(t.as_str()), Some(t));
        }
        assert_eq!(Tier::from_json(&serde_json::json!("3")), Some(Tier::T3));
        assert_eq!(Tier::from_json(&serde_json::json!(2)), None);
        assert_eq!(Tier::from_json(&serde_json::json!(true)), None);
    }
}
