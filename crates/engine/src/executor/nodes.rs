//! What each node type does. Templates and expressions see `{input, nodes: {<id>: {output}}}`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde_json::{json, Map, Value};
use sluice_types::Principal;

use super::sandbox::JobLimits;
use super::ssrf;
use crate::workflow_def::template_env_with_fuel;
use crate::Engine;

/// The template context of an execution.
pub fn context(input: &Value, outputs: &Map<String, Value>) -> Value {
    let nodes: Map<String, Value> = outputs
        .iter()
        .map(|(k, v)| (k.clone(), json!({"output": v})))
        .collect();
    json!({"input": input, "nodes": nodes})
}

/// Collects rendered text, refusing to grow past the output cap (so a template that prints
/// without end stops at the cap instead of filling memory).
struct Capped {
    buf: Vec<u8>,
    cap: usize,
    over: bool,
}

impl std::io::Write for Capped {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + b.len() > self.cap {
            self.over = true;
            return Err(std::io::Error::other("output limit"));
        }
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A template engine error as the workflow author should read it (no engine internals).
fn template_error(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(d) => format!("template error: {}: {d}", e.kind()),
        None => format!("template error: {}", e.kind()),
    }
}

/// Renders a string template; a string that is exactly one `{{ expression }}` keeps the
/// expression's JSON type (a number stays a number).
pub fn render_str(s: &str, ctx: &Value, limits: JobLimits) -> Result<Value, String> {
    if !s.contains("{{") && !s.contains("{%") {
        return Ok(Value::String(s.to_owned()));
    }
    let env = template_env_with_fuel(limits.fuel);
    let t = s.trim();
    if t.starts_with("{{") && t.ends_with("}}") && t.matches("{{").count() == 1 {
        let expr = env
            .compile_expression(&t[2..t.len() - 2])
            .map_err(|e| template_error(&e))?;
        let v = expr
            .eval(minijinja::Value::from_serialize(ctx))
            .map_err(|e| template_error(&e))?;
        return serde_json::to_value(&v).map_err(|e| e.to_string());
    }
    let tmpl = env.template_from_str(s).map_err(|e| template_error(&e))?;
    let mut out = Capped {
        buf: Vec::new(),
        cap: limits.max_output_bytes,
        over: false,
    };
    let rendered = tmpl
        .render_captured_to(minijinja::Value::from_serialize(ctx), &mut out)
        .map(drop);
    match rendered {
        Ok(()) => Ok(Value::String(
            String::from_utf8_lossy(&out.buf).into_owned(),
        )),
        Err(_) if out.over => Err(super::sandbox::too_large(limits.max_output_bytes)),
        Err(e) => Err(template_error(&e)),
    }
}

/// Renders every string inside `v`.
pub fn render(v: &Value, ctx: &Value, limits: JobLimits) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) => render_str(s, ctx, limits)?,
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|x| render(x, ctx, limits))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| Ok((k.clone(), render(x, ctx, limits)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

/// True when rendering `v` would change nothing (no string in it is a template).
pub fn is_literal(v: &Value) -> bool {
    match v {
        Value::String(s) => !s.contains("{{") && !s.contains("{%"),
        Value::Array(items) => items.iter().all(is_literal),
        Value::Object(m) => m.values().all(is_literal),
        _ => true,
    }
}

/// A condition's verdict.
pub fn condition(expr: &str, ctx: &Value, limits: JobLimits) -> Result<bool, String> {
    let env = template_env_with_fuel(limits.fuel);
    let e = env
        .compile_expression(expr)
        .map_err(|e| template_error(&e))?;
    let v = e
        .eval(minijinja::Value::from_serialize(ctx))
        .map_err(|e| template_error(&e))?;
    Ok(v.is_true())
}

/// `http_request`: returns `{status, headers, body}`; a non-2xx fails unless `allow_error_status`.
pub async fn http_request(
    allow_private: bool,
    params: &Value,
    idem_key: &str,
    timeout: Duration,
    max_body_bytes: usize,
) -> Result<Value, String> {
    let url = params["url"]
        .as_str()
        .ok_or("url did not render to a string")?;
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("invalid url: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("only http and https URLs are allowed".to_owned());
    }
    let port = parsed.port_or_known_default().unwrap_or(80);
    // An IP literal is checked as it is; a name is resolved once, every answer checked, and the
    // checked answers pinned (so a second DNS answer cannot point the request elsewhere).
    let name = parsed.host_str().ok_or("url has no host")?;
    let literal = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name)
        .parse::<IpAddr>();
    let (host, addrs): (Option<String>, Vec<SocketAddr>) = match literal {
        Ok(ip) => (None, vec![SocketAddr::new(ip, port)]),
        Err(_) => {
            let addrs = tokio::net::lookup_host((name, port))
                .await
                .map_err(|e| format!("cannot resolve {name}: {e}"))?
                .collect();
            (Some(name.to_owned()), addrs)
        }
    };
    if !allow_private {
        if let Some((a, why)) = addrs
            .iter()
            .find_map(|a| ssrf::special_purpose(a.ip()).map(|w| (a, w)))
        {
            return Err(format!(
                "refused: {} is not a public address ({why}); set [executions] allow_private_networks to reach it",
                a.ip()
            ));
        }
    }
    let method = params["method"]
        .as_str()
        .unwrap_or("GET")
        .to_ascii_uppercase();
    let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
    // Pin the checked address so a second DNS answer cannot redirect the request.
    let mut client = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(host) = &host {
        client = client.resolve_to_addrs(host, &addrs);
    }
    let client = client.build().map_err(|e| e.to_string())?;
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
    // The operator's cap is the most a node may read; the node may ask for less.
    let cap = params["max_response_bytes"]
        .as_u64()
        .map_or(max_body_bytes, |n| n.min(max_body_bytes as u64) as usize);
    let mut res = res;
    let mut bytes = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(|e| {
        if e.is_timeout() {
            format!(
                "Node timed out after {}s while reading the response",
                timeout.as_secs_f64().ceil() as u64
            )
        } else {
            format!("reading the response failed: {e}")
        }
    })? {
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

    const L: JobLimits = JobLimits {
        max_output_bytes: 1 << 20,
        fuel: 50_000,
    };

    #[test]
    fn rendering_stops_at_the_output_cap_and_debug_is_not_available() {
        let ctx = context(&json!({}), &Map::new());
        let small = JobLimits {
            max_output_bytes: 1000,
            ..L
        };
        let err = render_str("{% for i in range(500) %}xxxx{% endfor %}", &ctx, small).unwrap_err();
        assert!(err.contains("1000-byte output limit"), "{err}");
        let err = super::super::sandbox::evaluate(
            &super::super::sandbox::Job::Render {
                value: json!("{{ 'x' * 5000 }}"),
                ctx: ctx.clone(),
            },
            small,
        )
        .unwrap_err();
        assert!(err.contains("1000-byte output limit"), "{err}");
        let err = render_str("{{ debug() }}", &ctx, L).unwrap_err();
        assert!(err.starts_with("template error:"), "{err}");
        assert!(!err.contains("Environment"), "no engine internals: {err}");
    }

    #[test]
    fn templates_render_with_types_kept_for_single_expressions() {
        let mut outputs = Map::new();
        outputs.insert("a".into(), json!({"n": 41, "s": "x"}));
        let ctx = context(&json!({"id": 7}), &outputs);
        assert_eq!(
            render_str("{{ nodes.a.output.n + 1 }}", &ctx, L).unwrap(),
            json!(42)
        );
        assert_eq!(
            render_str("id={{ input.id }}/{{ nodes.a.output.s }}", &ctx, L).unwrap(),
            json!("id=7/x")
        );
        assert_eq!(
            render(&json!({"k": ["{{ input.id }}", 3]}), &ctx, L).unwrap(),
            json!({"k": [7, 3]})
        );
        assert!(
            render_str("{{ nodes.missing.output }}", &ctx, L).is_err(),
            "strict: an unknown name is an error"
        );
        assert!(condition("nodes.a.output.n > 40", &ctx, L).unwrap());
        assert!(!condition("input.id == 8", &ctx, L).unwrap());
    }

    #[tokio::test]
    async fn the_default_config_refuses_loopback_metadata_and_private_targets() {
        for url in [
            "http://127.0.0.1:9/x",
            "http://169.254.169.254/latest/meta-data",
            "http://10.0.0.1/",
            "http://localhost/",
            "http://198.18.0.1/",
            "http://0.0.0.0:80/",
            "http://[::1]:9/",
            "http://[::ffff:127.0.0.1]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[fd00::1]/",
            "http://224.0.0.1/",
            "http://2130706433/",
        ] {
            let err = http_request(
                false,
                &json!({"url": url}),
                "k",
                Duration::from_secs(1),
                1024,
            )
            .await
            .unwrap_err();
            assert!(err.starts_with("refused:"), "{url}: {err}");
        }
    }

    #[tokio::test]
    async fn an_ipv6_literal_url_works_where_private_targets_are_allowed() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("[::1]:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = sock.read(&mut buf).await;
            let body = r#"{"ok":true}"#;
            let res = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            sock.write_all(res.as_bytes()).await.unwrap();
        });
        let url = format!("http://[::1]:{port}/x");
        let out = http_request(
            true,
            &json!({"url": url}),
            "k",
            Duration::from_secs(5),
            1024,
        )
        .await
        .unwrap();
        assert_eq!(out["status"], 200);
        assert_eq!(out["body"], json!({"ok": true}));
    }

    #[tokio::test]
    async fn a_body_that_stalls_is_reported_as_a_timeout() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = sock.read(&mut buf).await;
            let head = "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"partial\":";
            sock.write_all(head.as_bytes()).await.unwrap();
            tokio::time::sleep(Duration::from_secs(10)).await;
        });
        let url = format!("http://127.0.0.1:{port}/");
        let err = http_request(
            true,
            &json!({"url": url}),
            "k",
            Duration::from_millis(500),
            1024,
        )
        .await
        .unwrap_err();
        assert_eq!(err, "Node timed out after 1s while reading the response");
    }
}
