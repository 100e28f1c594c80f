"""Sluice in front of a real LLM server (llama.cpp): both adapters, JSON and SSE, and the usage
Sluice returns equals what the server reported for the same request."""
import json

import httpx
import pytest

PROMPT = [{"role": "user", "content": "Name three colours."}]


@pytest.fixture(scope="module")
def key(real):
    return real.key(scopes=["chat:write", "models:read"])


def post(url, key, path, body):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    r = httpx.post(f"{url}{path}", json=body, headers=headers, timeout=120)
    assert r.status_code == 200, r.text
    return r


def sse(text):
    return [line[6:] for line in text.splitlines() if line.startswith("data: ")]


def test_openai_adapter_json_matches_the_server(real, key):
    body = {"messages": PROMPT, "max_tokens": 12, "temperature": 0}
    direct = post(real.upstream, None, "/v1/chat/completions", {**body, "model": "smollm2"}).json()
    via = post(real.url, key, "/v1/chat/completions", {**body, "model": "llama/smollm2"})
    assert via.headers["x-arena-resolved-model"] == "llama/smollm2"
    v = via.json()
    assert v["usage"]["prompt_tokens"] == direct["usage"]["prompt_tokens"]
    assert v["usage"]["completion_tokens"] == direct["usage"]["completion_tokens"] == 12
    assert v["choices"][0]["message"]["content"] == direct["choices"][0]["message"]["content"]


def test_openai_adapter_stream_reports_the_servers_usage(real, key):
    body = {"messages": PROMPT, "max_tokens": 10, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    direct = sse(post(real.upstream, None, "/v1/chat/completions", {**body, "model": "smollm2"}).text)
    via = sse(post(real.url, key, "/v1/chat/completions", {**body, "model": "llama/smollm2"}).text)
    assert via[-1] == "[DONE]"
    du = json.loads(direct[-2])["usage"]
    vu = json.loads(via[-2])["usage"]
    assert (vu["prompt_tokens"], vu["completion_tokens"]) == (du["prompt_tokens"], du["completion_tokens"])
    text = "".join(json.loads(d)["choices"][0]["delta"].get("content") or "" for d in via[:-2])
    assert text


def test_embeddings_pass_through(real, key):
    k = real.key(scopes=["chat:write"])
    v = post(real.url, k, "/v1/embeddings", {"model": "llama/smollm2-embed", "input": "hello"}).json()
    direct = post(real.upstream, None, "/v1/embeddings", {"model": "smollm2", "input": "hello"}).json()
    assert v["usage"]["prompt_tokens"] == direct["usage"]["prompt_tokens"]
    assert v["data"][0]["embedding"] == direct["data"][0]["embedding"]


def anthropic_total_input(u):
    return u.get("input_tokens", 0) + u.get("cache_read_input_tokens", 0) + u.get("cache_creation_input_tokens", 0)


def test_anthropic_adapter_json_matches_the_server(real, key):
    direct = post(real.upstream, None, "/v1/messages",
                  {"model": "smollm2", "messages": PROMPT, "max_tokens": 12, "temperature": 0}).json()
    v = post(real.url, key, "/v1/chat/completions",
             {"model": "llama-anthropic/smollm2", "messages": PROMPT, "max_tokens": 12, "temperature": 0}).json()
    assert v["object"] == "chat.completion"
    assert v["usage"]["prompt_tokens"] == anthropic_total_input(direct["usage"])
    assert v["usage"]["completion_tokens"] == direct["usage"]["output_tokens"]
    assert v["choices"][0]["message"]["content"] == direct["content"][0]["text"]
    assert v["choices"][0]["finish_reason"] == "length"


def test_anthropic_adapter_stream_matches_the_server(real, key):
    body = {"messages": PROMPT, "max_tokens": 8, "temperature": 0, "stream": True}
    raw = post(real.upstream, None, "/v1/messages", {**body, "model": "smollm2"}).text
    events = [json.loads(d) for d in sse(raw)]
    start = next(e for e in events if e["type"] == "message_start")["message"]["usage"]
    out = [e for e in events if e["type"] == "message_delta"][-1]["usage"]["output_tokens"]
    direct_text = "".join(e["delta"].get("text", "") for e in events if e["type"] == "content_block_delta")

    via = sse(post(real.url, key, "/v1/chat/completions",
                   {**body, "model": "llama-anthropic/smollm2", "stream_options": {"include_usage": True}}).text)
    assert via[-1] == "[DONE]"
    chunks = [json.loads(d) for d in via[:-1]]
    usage = chunks[-1]["usage"]
    assert usage["prompt_tokens"] == anthropic_total_input(start)
    assert usage["completion_tokens"] == out
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == direct_text
