//! Workflow definitions: nodes (`http_request`, `llm`, `agent`, `transform`, `condition`,
//! `delay`) joined by edges into a DAG. `validate` reports every problem at once with field
//! paths like `nodes[2].params.url`, including unknown node types, duplicate ids, edges to missing
//! nodes, cycles (naming the nodes on them), ill-typed params and templates that do not parse.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sluice_types::validation::{invalid_fields, Errors, FieldError};
use sluice_types::ApiError;

pub const NODE_TYPES: &[&str] = &[
    "http_request",
    "llm",
    "agent",
    "transform",
    "condition",
    "delay",
];
const HTTP_METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"];

/// Per-node retry policy: attempts in all, exponential backoff from `backoff_seconds`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Retry {
    pub max_attempts: u32,
    pub backoff_seconds: f64,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            max_attempts: 1,
            backoff_seconds: 1.0,
        }
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub params: Map<String, Value>,
    #[serde(default)]
    pub retry: Retry,
    pub timeout_seconds: Option<u64>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Edge {
    pub from: String,
    pub to: String,
    /// On edges leaving a `condition` node: taken when the expression is this value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when: Option<bool>,
}

/// A validated definition (stored as JSON; executions pin a version of it).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Definition {
    pub nodes: Vec<Node>,
    #[serde(default)]
    pub edges: Vec<Edge>,
    pub timeout_seconds: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Value>,
}

/// Limits on definitions (configurable).
#[derive(Clone, Debug)]
pub struct DefinitionLimits {
    pub max_nodes: usize,
    /// Most edges in one workflow.
    pub max_edges: usize,
    pub max_timeout_seconds: u64,
}

impl Default for DefinitionLimits {
    fn default() -> Self {
        DefinitionLimits {
            max_nodes: 200,
            max_edges: 1_000,
            max_timeout_seconds: 3_600,
        }
    }
}

/// The one template engine (sandboxed: no filesystem, fuel-limited at render time).
pub fn template_env() -> minijinja::Environment<'static> {
    template_env_with_fuel(50_000)
}

/// The template environment with `fuel` instructions per evaluation. `debug()` is removed: it
/// prints the engine's internals, which are not the workflow author's business.
pub fn template_env_with_fuel(fuel: u64) -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_fuel(Some(fuel));
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.remove_global("debug");
    env
}

/// Deserialises `v` (found at `at`) as `T`, or one field error in our words with its full path.
fn parse_at<T: serde::de::DeserializeOwned>(v: &Value, at: &str) -> Result<T, FieldError> {
    serde_path_to_error::deserialize::<_, T>(v).map_err(|err| {
        let inner = err.path().to_string();
        let path = if inner == "." {
            at.to_owned()
        } else {
            format!("{at}.{inner}")
        };
        sluice_types::validation::from_serde(&path, &err.into_inner().to_string())
    })
}

fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%")
}

/// Whether each template and expression of a definition parses. Parsing can evaluate constant
/// parts (`'x' * 100000000` is folded at compile time), so it is done where templates run — in
/// the sandbox — and the validator only reads the verdicts.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct Syntax {
    /// Source → `None` (parses) or the parser's complaint.
    pub templates: HashMap<String, Option<String>>,
    pub expressions: HashMap<String, Option<String>>,
}

impl Syntax {
    /// Parses `templates` and `expressions` in this thread (inside a template worker, or tests).
    pub fn check_here(templates: &[String], expressions: &[String]) -> Syntax {
        let env = template_env();
        let detail = |e: minijinja::Error| Some(e.detail().unwrap_or("syntax error").to_owned());
        Syntax {
            templates: templates
                .iter()
                .map(|t| (t.clone(), env.template_from_str(t).err().and_then(detail)))
                .collect(),
            expressions: expressions
                .iter()
                .map(|x| (x.clone(), env.compile_expression(x).err().and_then(detail)))
                .collect(),
        }
    }

    fn verdict(map: &HashMap<String, Option<String>>, src: &str) -> Option<String> {
        match map.get(src) {
            Some(v) => v.clone(),
            None => Some("it could not be checked within the template sandbox's limits".into()),
        }
    }
}

/// The template strings and condition expressions of a raw definition, each once.
pub fn sources(raw: &Map<String, Value>) -> (Vec<String>, Vec<String>) {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) if is_template(s) && !out.contains(s) => out.push(s.clone()),
            Value::Array(items) => items.iter().for_each(|x| walk(x, out)),
            Value::Object(m) => m.values().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let (mut templates, mut expressions) = (Vec::new(), Vec::new());
    for node in raw
        .get("nodes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(params) = node.get("params") else {
            continue;
        };
        walk(params, &mut templates);
        if node.get("type").and_then(Value::as_str) == Some("condition") {
            if let Some(x) = params.get("expression").and_then(Value::as_str) {
                if !expressions.iter().any(|e| e == x) {
                    expressions.push(x.to_owned());
                }
            }
        }
    }
    (templates, expressions)
}

/// Reports every string inside `v` that looks like a template and does not parse.
fn check_templates(syntax: &Syntax, e: &mut Errors, at: &str, v: &Value) {
    match v {
        Value::String(s) if is_template(s) => {
            if let Some(detail) = Syntax::verdict(&syntax.templates, s) {
                e.add(
                    at,
                    "invalid_format",
                    format!("Template does not parse: {detail}"),
                );
            }
        }
        Value::Array(items) => {
            for (i, x) in items.iter().enumerate() {
                check_templates(syntax, e, &format!("{at}[{i}]"), x);
            }
        }
        Value::Object(m) => {
            for (k, x) in m {
                check_templates(syntax, e, &format!("{at}.{k}"), x);
            }
        }
        _ => {}
    }
}

fn require_str(e: &mut Errors, params: &Map<String, Value>, at: &str, key: &str) -> Option<String> {
    match params.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::String(_)) => {
            e.add(
                format!("{at}.{key}"),
                "min_length",
                format!("{key} must not be empty"),
            );
            None
        }
        None | Some(Value::Null) => {
            e.add(
                format!("{at}.{key}"),
                "required",
                format!("{key} is required"),
            );
            None
        }
        Some(_) => {
            e.add(
                format!("{at}.{key}"),
                "invalid_type",
                format!("{key} must be a string"),
            );
            None
        }
    }
}

fn check_params(syntax: &Syntax, e: &mut Errors, at: &str, node: &Node) {
    let p = &node.params;
    let at = format!("{at}.params");
    match node.kind.as_str() {
        "http_request" => {
            require_str(e, p, &at, "url");
            if let Some(m) = p.get("method") {
                match m.as_str() {
                    Some(m) if HTTP_METHODS.contains(&m.to_ascii_uppercase().as_str()) => {}
                    _ => e.add(
                        format!("{at}.method"),
                        "invalid_enum",
                        format!("Invalid method. Allowed: {}", HTTP_METHODS.join(", ")),
                    ),
                }
            }
            if p.get("headers")
                .is_some_and(|h| !h.is_object() && !h.is_null())
            {
                e.add(
                    format!("{at}.headers"),
                    "invalid_type",
                    "headers must be an object of strings",
                );
            }
            if p.get("allow_error_status").is_some_and(|v| !v.is_boolean()) {
                e.add(
                    format!("{at}.allow_error_status"),
                    "invalid_type",
                    "allow_error_status must be a boolean",
                );
            }
        }
        "llm" => {
            require_str(e, p, &at, "model");
            match (p.get("prompt"), p.get("messages")) {
                (None, None) => e.add(
                    format!("{at}.prompt"),
                    "required",
                    "prompt or messages is required",
                ),
                (Some(v), _) if !v.is_string() => e.add(
                    format!("{at}.prompt"),
                    "invalid_type",
                    "prompt must be a string",
                ),
                (_, Some(v)) if !v.is_array() => e.add(
                    format!("{at}.messages"),
                    "invalid_type",
                    "messages must be an array",
                ),
                _ => {}
            }
        }
        "agent" => {
            if let Some(id) = require_str(e, p, &at, "agent_id") {
                if !sluice_types::id::is_id("agent", &id) {
                    e.add(
                        format!("{at}.agent_id"),
                        "invalid_format",
                        "agent_id must look like agent_…",
                    );
                }
            }
            require_str(e, p, &at, "input");
        }
        "transform" if !p.contains_key("template") => e.add(
            format!("{at}.template"),
            "required",
            "template is required (any JSON; strings are templates)",
        ),
        "condition" => {
            if let Some(expr) = require_str(e, p, &at, "expression") {
                if let Some(detail) = Syntax::verdict(&syntax.expressions, &expr) {
                    e.add(
                        format!("{at}.expression"),
                        "invalid_format",
                        format!("Expression does not parse: {detail}"),
                    );
                }
            }
        }
        "delay" => match p.get("seconds") {
            Some(Value::Number(n)) => match n.as_f64() {
                Some(s) if s < 0.0 => e.add(
                    format!("{at}.seconds"),
                    "min_value",
                    "seconds must be at least 0",
                ),
                Some(s) if s > 86_400.0 => e.add(
                    format!("{at}.seconds"),
                    "max_value",
                    "seconds must be at most 86400",
                ),
                _ => {}
            },
            None | Some(Value::Null) => {
                e.add(format!("{at}.seconds"), "required", "seconds is required")
            }
            Some(_) => e.add(
                format!("{at}.seconds"),
                "invalid_type",
                "seconds must be a number",
            ),
        },
        _ => {}
    }
    check_templates(syntax, e, &at, &Value::Object(p.clone()));
}

/// One cycle among `ids` (those left after removing every node with no incoming edge), as a path.
fn find_cycle(ids: &[String], edges: &[Edge]) -> Vec<String> {
    let left: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
    let next: HashMap<&str, Vec<&str>> = edges
        .iter()
        .filter(|e| left.contains(e.from.as_str()) && left.contains(e.to.as_str()))
        .fold(HashMap::new(), |mut m, e| {
            m.entry(e.from.as_str()).or_default().push(e.to.as_str());
            m
        });
    // Every remaining node has an incoming edge from a remaining node, so walking backwards
    // (or forwards) must revisit a node: walk forwards until a node repeats.
    let Some(start) = ids.first() else {
        return Vec::new();
    };
    let mut path: Vec<&str> = vec![start.as_str()];
    let mut cur = start.as_str();
    loop {
        let Some(n) = next.get(cur).and_then(|v| v.first()) else {
            return ids.to_vec();
        };
        if let Some(pos) = path.iter().position(|p| p == n) {
            let mut cycle: Vec<String> = path[pos..].iter().map(|s| (*s).to_owned()).collect();
            cycle.push((*n).to_owned());
            return cycle;
        }
        path.push(n);
        cur = n;
    }
}

/// Validates a raw definition (the `nodes`, `edges`, `timeout_seconds`, `input_schema` fields of a
/// workflow body) into a `Definition`, or every problem at once.
pub fn validate(
    raw: &Map<String, Value>,
    limits: &DefinitionLimits,
    syntax: &Syntax,
) -> Result<Definition, Vec<FieldError>> {
    let mut e = Errors::new();
    let nodes_raw = match raw.get("nodes") {
        Some(Value::Array(n)) if n.is_empty() => {
            e.add("nodes", "min_length", "A workflow needs at least one node");
            Vec::new()
        }
        Some(Value::Array(n)) if n.len() > limits.max_nodes => {
            e.add(
                "nodes",
                "max_length",
                format!("A workflow has at most {} nodes", limits.max_nodes),
            );
            Vec::new()
        }
        Some(Value::Array(n)) => n.clone(),
        None | Some(Value::Null) => {
            e.add("nodes", "required", "nodes is required");
            Vec::new()
        }
        Some(_) => {
            e.add("nodes", "invalid_type", "nodes must be an array");
            Vec::new()
        }
    };
    let mut nodes = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (i, n) in nodes_raw.iter().enumerate() {
        let at = format!("nodes[{i}]");
        let node: Node = match parse_at::<Node>(n, &at) {
            Ok(node) => node,
            Err(fe) => {
                e.push(fe);
                continue;
            }
        };
        if node.id.is_empty()
            || node.id.len() > 64
            || !node
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            e.add(
                format!("{at}.id"),
                "invalid_format",
                "Node ids are 1–64 letters, digits, `_` or `-`",
            );
        }
        if let Some(first) = seen.insert(node.id.clone(), i) {
            e.add(
                format!("{at}.id"),
                "invalid_format",
                format!("Duplicate node id '{}' (also nodes[{first}])", node.id),
            );
        }
        if !NODE_TYPES.contains(&node.kind.as_str()) {
            e.add(
                format!("{at}.type"),
                "invalid_enum",
                format!(
                    "Invalid node type: '{}'. Allowed: {}",
                    node.kind,
                    NODE_TYPES.join(", ")
                ),
            );
        } else {
            check_params(syntax, &mut e, &at, &node);
        }
        if !(1..=10).contains(&node.retry.max_attempts) {
            e.add(
                format!("{at}.retry.max_attempts"),
                "max_value",
                "retry.max_attempts must be 1 to 10",
            );
        }
        if !(0.0..=3600.0).contains(&node.retry.backoff_seconds) {
            e.add(
                format!("{at}.retry.backoff_seconds"),
                "max_value",
                "retry.backoff_seconds must be 0 to 3600",
            );
        }
        if node
            .timeout_seconds
            .is_some_and(|t| t == 0 || t > limits.max_timeout_seconds)
        {
            e.add(
                format!("{at}.timeout_seconds"),
                "max_value",
                format!(
                    "timeout_seconds must be 1 to {}",
                    limits.max_timeout_seconds
                ),
            );
        }
        nodes.push(node);
    }
    let edges: Vec<Edge> = match raw.get("edges") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) if items.len() > limits.max_edges => {
            e.add(
                "edges",
                "max_length",
                format!("A workflow has at most {} edges", limits.max_edges),
            );
            Vec::new()
        }
        Some(Value::Array(items)) => {
            let mut seen: HashMap<(String, String), usize> = HashMap::new();
            items
                .iter()
                .enumerate()
                .filter_map(|(i, x)| match parse_at::<Edge>(x, &format!("edges[{i}]")) {
                    Ok(edge) => {
                        let pair = (edge.from.clone(), edge.to.clone());
                        if let Some(first) = seen.insert(pair, i) {
                            e.add(
                                format!("edges[{i}]"),
                                "invalid_format",
                                format!(
                                    "Duplicate edge {} → {} (also edges[{first}])",
                                    edge.from, edge.to
                                ),
                            );
                            return None;
                        }
                        Some(edge)
                    }
                    Err(fe) => {
                        e.push(fe);
                        None
                    }
                })
                .collect()
        }
        Some(_) => {
            e.add("edges", "invalid_type", "edges must be an array");
            Vec::new()
        }
    };
    let kinds: HashMap<&str, &str> = nodes
        .iter()
        .map(|n| (n.id.as_str(), n.kind.as_str()))
        .collect();
    let ids = || {
        nodes
            .iter()
            .map(|n| n.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (i, edge) in edges.iter().enumerate() {
        for (end, id) in [("from", &edge.from), ("to", &edge.to)] {
            if !kinds.contains_key(id.as_str()) {
                e.add(
                    format!("edges[{i}].{end}"),
                    "invalid_enum",
                    format!("No node '{id}'. Nodes: {}", ids()),
                );
            }
        }
        let from_condition = kinds.get(edge.from.as_str()) == Some(&"condition");
        if from_condition && edge.when.is_none() {
            e.add(
                format!("edges[{i}].when"),
                "required",
                "Edges from a condition node need `when: true` or `when: false`",
            );
        }
        if !from_condition && edge.when.is_some() {
            e.add(
                format!("edges[{i}].when"),
                "invalid_format",
                "`when` is only for edges from a condition node",
            );
        }
    }
    // Kahn's algorithm; whatever is left sits on or behind a cycle.
    let mut indegree: HashMap<&str, usize> = nodes.iter().map(|n| (n.id.as_str(), 0)).collect();
    for edge in edges.iter().filter(|x| kinds.contains_key(x.from.as_str())) {
        if let Some(d) = indegree.get_mut(edge.to.as_str()) {
            *d += 1;
        }
    }
    let mut ready: Vec<&str> = indegree
        .iter()
        .filter(|(_, d)| **d == 0)
        .map(|(k, _)| *k)
        .collect();
    let mut done = 0;
    while let Some(n) = ready.pop() {
        done += 1;
        for edge in edges.iter().filter(|x| x.from == n) {
            if let Some(d) = indegree.get_mut(edge.to.as_str()) {
                *d -= 1;
                if *d == 0 {
                    ready.push(edge.to.as_str());
                }
            }
        }
    }
    if done < indegree.len() {
        let mut left: Vec<String> = nodes
            .iter()
            .filter(|n| indegree.get(n.id.as_str()).is_some_and(|d| *d > 0))
            .map(|n| n.id.clone())
            .collect();
        left.dedup();
        let cycle = find_cycle(&left, &edges);
        e.add(
            "edges",
            "invalid_format",
            format!("The edges form a cycle: {}", cycle.join(" → ")),
        );
    }
    let timeout_seconds = match raw.get("timeout_seconds") {
        None | Some(Value::Null) => 300,
        Some(v) => match v.as_u64() {
            Some(t) if (1..=limits.max_timeout_seconds).contains(&t) => t,
            Some(_) => {
                e.add(
                    "timeout_seconds",
                    "max_value",
                    format!(
                        "timeout_seconds must be 1 to {}",
                        limits.max_timeout_seconds
                    ),
                );
                300
            }
            None => {
                e.add(
                    "timeout_seconds",
                    "invalid_type",
                    "timeout_seconds must be a whole number of seconds",
                );
                300
            }
        },
    };
    let input_schema = match raw.get("input_schema") {
        None | Some(Value::Null) => None,
        Some(v @ Value::Object(_)) => Some(v.clone()),
        Some(_) => {
            e.add(
                "input_schema",
                "invalid_type",
                "input_schema must be a JSON Schema object",
            );
            None
        }
    };
    if !e.is_empty() {
        return Err(e.into_vec());
    }
    Ok(Definition {
        nodes,
        edges,
        timeout_seconds,
        input_schema,
    })
}

/// Every problem of a definition as one 422.
pub fn errors(list: Vec<FieldError>) -> ApiError {
    invalid_fields(list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn here(raw: &Map<String, Value>) -> Syntax {
        let (t, x) = sources(raw);
        Syntax::check_here(&t, &x)
    }

    fn check(v: Value) -> Result<Definition, Vec<String>> {
        let raw = v.as_object().unwrap();
        validate(raw, &DefinitionLimits::default(), &here(raw)).map_err(|errs| {
            errs.into_iter()
                .map(|e| format!("{}:{}", e.field, e.code))
                .collect()
        })
    }

    #[test]
    fn a_valid_dag_passes_with_defaults() {
        let d = check(json!({"nodes": [
            {"id": "fetch", "type": "http_request", "params": {"url": "https://x/{{ input.id }}"}},
            {"id": "ok", "type": "condition", "params": {"expression": "nodes.fetch.output.status == 200"}},
            {"id": "t", "type": "transform", "params": {"template": {"a": "{{ input.a }}"}}}
        ], "edges": [{"from": "fetch", "to": "ok"}, {"from": "ok", "to": "t", "when": true}]}))
        .unwrap();
        assert_eq!(d.timeout_seconds, 300);
        assert_eq!(d.nodes[0].retry, Retry::default());
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let errs = check(json!({"nodes": [
            {"id": "a", "type": "http_request", "params": {"url": 5}},
            {"id": "a", "type": "teleport"},
            {"id": "c", "type": "transform", "params": {"template": "{{ unclosed"}},
            {"id": "d", "type": "delay", "params": {}}
        ], "edges": [{"from": "a", "to": "zz"}], "timeout_seconds": 999999}))
        .unwrap_err();
        assert_eq!(
            errs,
            [
                "nodes[0].params.url:invalid_type",
                "nodes[1].id:invalid_format",
                "nodes[1].type:invalid_enum",
                "nodes[2].params.template:invalid_format",
                "nodes[3].params.seconds:required",
                "edges[0].to:invalid_enum",
                "timeout_seconds:max_value",
            ]
        );
    }

    #[test]
    fn a_cycle_names_its_nodes() {
        let errs = validate(
            json!({"nodes": [
                {"id": "a", "type": "transform", "params": {"template": 1}},
                {"id": "b", "type": "transform", "params": {"template": 1}},
                {"id": "c", "type": "transform", "params": {"template": 1}}
            ], "edges": [{"from": "a", "to": "b"}, {"from": "b", "to": "c"}, {"from": "c", "to": "b"}]})
            .as_object()
            .unwrap(),
            &DefinitionLimits::default(),
            &Syntax::default(),
        )
        .unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "edges");
        assert!(
            errs[0].message.contains("b → c → b") || errs[0].message.contains("c → b → c"),
            "{}",
            errs[0].message
        );
    }

    #[test]
    fn unknown_fields_duplicate_edges_and_type_errors_are_reported_in_our_words() {
        let raw = json!({"nodes": [
            {"id": "a", "type": "transform", "params": {"template": 1}, "colour": "red"},
            {"id": "b", "type": "transform", "params": {"template": 1}, "retry": {"max_attempts": -1}},
            {"id": "c", "type": "transform", "params": {"template": 1}}
        ], "edges": [{"from": "a", "to": "c"}, {"from": "a", "to": "c"}, {"from": "a", "to": "c", "weight": 2}]});
        let errs = validate(
            raw.as_object().unwrap(),
            &DefinitionLimits::default(),
            &Syntax::default(),
        )
        .unwrap_err();
        let got: Vec<(String, &str, String)> = errs
            .into_iter()
            .map(|e| (e.field, e.code, e.message))
            .collect();
        assert_eq!(got[0].0, "nodes[0].colour");
        assert_eq!(got[0].1, "invalid_format");
        assert!(
            got[0]
                .2
                .starts_with("Unknown field 'colour'. Allowed: id, type"),
            "{}",
            got[0].2
        );
        assert_eq!(
            got[1],
            (
                "nodes[1].retry.max_attempts".to_owned(),
                "invalid_type",
                "nodes[1].retry.max_attempts must be a non-negative integer".to_owned()
            )
        );
        assert_eq!(got[2].0, "edges[1]");
        assert!(got[2].2.starts_with("Duplicate edge a → c"), "{}", got[2].2);
        assert_eq!(got[3].0, "edges[2].weight");
        let many: Vec<Value> = (0..1_001)
            .map(|_| json!({"from": "a", "to": "b"}))
            .collect();
        let raw = json!({"nodes": [{"id": "a", "type": "transform", "params": {"template": 1}}], "edges": many});
        let errs = validate(
            raw.as_object().unwrap(),
            &DefinitionLimits::default(),
            &Syntax::default(),
        )
        .unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(
            (errs[0].field.as_str(), errs[0].code),
            ("edges", "max_length")
        );
    }
}
