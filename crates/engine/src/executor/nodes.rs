//! What each node type does. Templates and expressions see `{input, nodes: {<id>: {output}}}`.

use std::net::IpAddr;
use std::time::Duration;

use serde_json::{json, Map, Value};
use sluice_types::Principal;

use crate::workflow_def::template_env;
use crate::Engine;

/// The template context of an execution.
pub fn context(input: &Value, outputs: &Map<String, Value>) -> Value {
    let nodes: Map<String, Value> = outputs
        .iter()
        .map(|(k, v)| (k.clone(), json!({"output": v})))
        .collect();
    json!({"input": input, "nodes": nodes})
}

/// Renders a string template; a string that is exactly one `{{ expression }}` keeps the
/// expression's JSON type (a number stays a number).
pub fn render_str(s: &str, ctx: &Value) -> Result<Value, String> {
    let env = template_env();
    let t = s.trim();
    if t.starts_with("{{") && t.ends_with("}}") && t.matches("{{").count() == 1 {
        let expr = env
            .compile_expression(&t[2..t.len() - 2])
            .map_err(|e| e.to_string())?;
        let v = expr
            .eval(minijinja::Value::from_serialize(ctx))
            .map_err(|e| e.to_string())?;
        return serde_json::to_value(&v).map_err(|e| e.to_string());
    }
    if !s.contains("{{") && !s.contains("{%") {
        return Ok(Value::String(s.to_owned()));
    }
    let tmpl = env.template_from_str(s).map_err(|e| e.to_string())?;
    tmpl.render(minijinja::Value::from_serialize(ctx))
        .map(Value::String)
        .map_err(|e| e.to_string())
}

/// Renders every string inside `v`.
pub fn render(v: &Value, ctx: &Value) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) => render_str(s, ctx)?,
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|x| render(x, ctx))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| Ok((k.clone(), render(x, ctx)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

/// A condition's verdict.
pub fn condition(expr: &str, ctx: &Value) -> Result<bool, String> {
    let env = template_env();
    let e = env.compile_expression(expr).map_err(|e| e.to_string())?;
    let v = e
        .eval(minijinja::Value::from_serialize(ctx))
        .map_err(|e| e.to_string())?;
    Ok(v.is_true())
}

/// Addresses an `http_request` node may not reach unless the operator allows private networks:
/// loopback, private ranges, link-local (cloud metadata lives at 169.254.169.254), unspecified.
pub fn forbidden_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.octets()[0] == 100 && (v4.octets()[1] & 0xC0) == 64
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| forbidden_ip(IpAddr::V4(v4)))
        }
    }
}

/// `http_request`: returns `{status, headers, body}`; a non-2xx fails unless `allow_error_status`.
pub async fn http_request(
    allow_private: bool,
    params: &Value,
    idem_key: &str,
    timeout: Duration,
) -> Result<Value, String> {
    let url = params["url"]
        .as_str()
        .ok_or("url did not render to a string")?;
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("invalid url: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("only http and https URLs are allowed".to_owned());
    }
    let host = parsed.host_str().ok_or("url has no host")?.to_owned();
    let port = parsed.port_or_known_default().unwrap_or(80);
    let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    if !allow_private && addrs.iter().any(|a| forbidden_ip(a.ip())) {
        return Err(format!(
            "refused: {host} resolves to a private, loopback or link-local address"
        ));
    }
    let method = params["method"]
        .as_str()
        .unwrap_or("GET")
        .to_ascii_uppercase();
    let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
    // Pin the checked address so a second DNS answer cannot redirect the request.
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .resolve_to_addrs(&host, &addrs)
        .build()
        .map_err(|e| e.to_string())?;
    let mut req = client
        .request(method, parsed)
        .header("idempotency-key", idem_key);
    if let Some(h) = params["headers"].as_object() {
        for (k, v) in h {
            req = req.header(
                k.as_str(),
                v.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string()),
            );
        }
    }
    match &params["body"] {
        Value::Null => {}
        Value::String(s) => req = req.body(s.clone()),
        other => req = req.json(other),
    }
    let res = req.send().await.map_err(|e| {
        if e.is_timeout() {
            format!(
                "Connection timeout after {}s",
                timeout.as_secs_f64().ceil() as u64
            )
        } else {
            format!("request failed: {e}")
        }
    })?;
    let status = res.status().as_u16();
    let headers: Map<String, Value> = res
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), json!(v.to_str().unwrap_or(""))))
        .collect();
    let cap = params["max_response_bytes"].as_u64().unwrap_or(1024 * 1024) as usize;
    let mut res = res;
    let mut bytes = Vec::new();
    while let Some(chunk) = res
        .chunk()
        .await
        .map_err(|e| format!("reading the response failed: {e}"))?
    {
        if bytes.len() + chunk.len() > cap {
            return Err(format!("response larger than {cap} bytes"));
        }
        bytes.extend_from_slice(&chunk);
    }
    let body = serde_json::from_slice::<Value>(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    let out = json!({"status": status, "headers": headers, "body": body});
    if !(200..300).contains(&status) && params["allow_error_status"] != Value::Bool(true) {
        return Err(format!("HTTP {status}"));
    }
    Ok(out)
}

/// `llm` and `agent` nodes: a chat call through the gateway path, as the key that started the run.
pub async fn chat(
    engine: &Engine,
    who: &Principal,
    req: Value,
    request_id: String,
) -> Result<Value, String> {
    let ctx = crate::llm::RequestCtx {
        request_id,
        started: std::time::Instant::now(),
    };
    let res = engine.chat(who, req, ctx).await.map_err(|f| {
        format!(
            "{}: {}",
            f.error.kind.code(sluice_types::Dialect::Flows),
            f.error.message
        ) + &f
            .error
            .details
            .map(|d| format!(" {}", Value::Object(d)))
            .unwrap_or_default()
    })?;
    match res.reply {
        sluice_gateway::ChatReply::Json(v) => Ok(json!({
            "text": v["choices"][0]["message"]["content"],
            "model": v["model"],
            "usage": v["usage"],
        })),
        sluice_gateway::ChatReply::Stream(_) => Err("unexpected stream".to_owned()),
    }
}

/// The chat request of an `llm` node (params already rendered).
pub fn llm_request(params: &Value) -> Value {
    let messages = match (&params["messages"], &params["prompt"]) {
        (Value::Array(m), _) => Value::Array(m.clone()),
        (_, Value::String(p)) => json!([{"role": "user", "content": p}]),
        _ => json!([]),
    };
    let mut req = json!({"model": params["model"], "messages": messages});
    for k in ["max_tokens", "temperature"] {
        if !params[k].is_null() {
            req[k] = params[k].clone();
        }
    }
    req
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_render_with_types_kept_for_single_expressions() {
        let mut outputs = Map::new();
        outputs.insert("a".into(), json!({"n": 41, "s": "x"}));
        let ctx = context(&json!({"id": 7}), &outputs);
        assert_eq!(
            render_str("{{ nodes.a.output.n + 1 }}", &ctx).unwrap(),
            json!(42)
        );
        assert_eq!(
            render_str("id={{ input.id }}/{{ nodes.a.output.s }}", &ctx).unwrap(),
            json!("id=7/x")
        );
        assert_eq!(
            render(&json!({"k": ["{{ input.id }}", 3]}), &ctx).unwrap(),
            json!({"k": [7, 3]})
        );
        assert!(
            render_str("{{ nodes.missing.output }}", &ctx).is_err(),
            "strict: an unknown name is an error"
        );
        assert!(condition("nodes.a.output.n > 40", &ctx).unwrap());
        assert!(!condition("input.id == 8", &ctx).unwrap());
    }

    #[tokio::test]
    async fn the_default_config_refuses_loopback_metadata_and_private_targets() {
        for url in [
            "http://127.0.0.1:9/x",
            "http://169.254.169.254/latest/meta-data",
            "http://10.0.0.1/",
            "http://localhost/",
        ] {
            let err = http_request(false, &json!({"url": url}), "k", Duration::from_secs(1))
                .await
                .unwrap_err();
            assert!(err.starts_with("refused:"), "{url}: {err}");
        }
    }

    #[test]
    fn private_and_metadata_addresses_are_forbidden() {
        for ip in [
            "127.0.0.1",
            "10.0.0.1",
            "192.168.1.1",
            "172.16.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "100.64.0.1",
        ] {
            assert!(forbidden_ip(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:4700::1"] {
            assert!(!forbidden_ip(ip.parse().unwrap()), "{ip}");
        }
    }
}
