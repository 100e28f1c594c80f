//! API key scopes (CONTRACT §5). `admin` implies every other scope, in every account.

/// One permission a key may carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    ModelsRead,
    ChatWrite,
    AgentsRead,
    AgentsWrite,
    WorkflowsRead,
    WorkflowsWrite,
    ExecutionsRead,
    ExecutionsWrite,
    KeysRead,
    KeysWrite,
    UsageRead,
    Admin,
}

impl Scope {
    pub const ALL: &'static [Scope] = &[
        Scope::ModelsRead,
        Scope::ChatWrite,
        Scope::AgentsRead,
        Scope::AgentsWrite,
        Scope::WorkflowsRead,
        Scope::WorkflowsWrite,
        Scope::ExecutionsRead,
        Scope::ExecutionsWrite,
        Scope::KeysRead,
        Scope::KeysWrite,
        Scope::UsageRead,
        Scope::Admin,
    ];

    /// What a key gets when its creator names no scopes: everything but `admin`.
    pub fn defaults() -> Vec<Scope> {
        Scope::ALL
            .iter()
            .copied()
            .filter(|s| *s != Scope::Admin)
            .collect()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::ModelsRead => "models:read",
            Scope::ChatWrite => "chat:write",
            Scope::AgentsRead => "agents:read",
            Scope::AgentsWrite => "agents:write",
            Scope::WorkflowsRead => "workflows:read",
            Scope::WorkflowsWrite => "workflows:write",
            Scope::ExecutionsRead => "executions:read",
            Scope::ExecutionsWrite => "executions:write",
            Scope::KeysRead => "keys:read",
            Scope::KeysWrite => "keys:write",
            Scope::UsageRead => "usage:read",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.iter().copied().find(|scope| scope.as_str() == s)
    }
}

/// Parses a stored comma-separated scope list, skipping names this build does not know
/// (a newer version may have written them; an unknown scope grants nothing).
pub fn parse_list(s: &str) -> Vec<Scope> {
    s.split(',')
        .filter_map(|p| Scope::parse(p.trim()))
        .collect()
}

/// The stored form: comma-separated names.
pub fn join_list(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scope_round_trips() {
        for s in Scope::ALL {
            assert_eq!(Scope::parse(s.as_str()), Some(*s));
        }
        assert_eq!(parse_list(&join_list(Scope::ALL)), Scope::ALL.to_vec());
        assert_eq!(parse_list("chat:write,bogus"), vec![Scope::ChatWrite]);
    }
}
