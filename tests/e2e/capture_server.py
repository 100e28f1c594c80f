#!/usr/bin/env python3
"""A fake Anthropic Messages / OpenAI Responses upstream that records every request.

Standard library only. Listens on 127.0.0.1 (port 0 = any free port), prints
`listening on http://127.0.0.1:PORT` on stdout, and writes one JSON file per request
(method, path, query, headers, body) into --log-dir as NNNN-METHOD-path.json.

Answers:
  POST /v1/messages               Anthropic Messages: SSE if body.stream, else JSON
  POST /v1/messages/count_tokens  {"input_tokens": N}
  POST /v1/responses              OpenAI Responses: SSE if body.stream, else JSON
  anything else                   404 (logged)

The knobs below exist to find out what a client needs from the stream:
  --omit-event NAME      leave out an SSE event (repeatable), e.g. ping, response.in_progress
  --no-sequence-number   Responses events without sequence_number
  --no-item-ids          Responses output items / completed output without ids
  --bare-completed       response.completed carries only {id, object, status, usage}
  --no-usage             no usage in message_delta / response.completed
  --ping                 add Anthropic `ping` events (after message_start)
  --no-event-lines       SSE frames carry only `data:` lines (no `event:` line)
  --fail-status CODE     answer /messages and /responses with this HTTP error status

    python3 capture_server.py --log-dir /tmp/cap [--port 0] [--text "Hi there!"]
"""
import argparse
import base64
import gzip
import json
import os
import sys
import threading
import time
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

ARGS = None
COUNTER = 0
LOCK = threading.Lock()


def next_seq():
    global COUNTER
    with LOCK:
        COUNTER += 1
        return COUNTER


def decode_body(raw, encoding):
    """Returns (body, note): parsed JSON if possible, else text, else base64."""
    note = None
    enc = (encoding or "").lower()
    try:
        if enc == "gzip":
            raw = gzip.decompress(raw)
        elif enc == "deflate":
            raw = zlib.decompress(raw)
        elif enc:
            note = f"content-encoding {enc} not decoded"
    except Exception as e:  # noqa: BLE001 - record, don't fail
        note = f"could not decode {enc}: {e}"
    if not raw:
        return None, note
    try:
        return json.loads(raw), note
    except Exception:  # noqa: BLE001
        pass
    try:
        return raw.decode("utf-8"), note
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(raw).decode()}, note


def count_chars(body):
    return len(json.dumps(body)) if body is not None else 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "capture/1"

    def log_message(self, fmt, *args):  # quiet stderr; everything goes to the log dir
        if ARGS.verbose:
            sys.stderr.write("capture: " + (fmt % args) + "\n")

    # ---- plumbing -------------------------------------------------------------
    def read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            chunks = []
            while True:
                line = self.rfile.readline().strip()
                size = int(line.split(b";")[0] or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def record(self):
        raw = self.read_body()
        body, note = decode_body(raw, self.headers.get("Content-Encoding"))
        url = urlsplit(self.path)
        self.req_path = url.path
        self.req_body = body
        seq = next_seq()
        entry = {
            "seq": seq,
            "time": time.time(),
            "method": self.command,
            "path": url.path,
            "query": parse_qs(url.query),
            "http_version": self.request_version,
            "headers": [[k, v] for k, v in self.headers.items()],
            "body_bytes": len(raw),
            "body": body,
        }
        if note:
            entry["body_note"] = note
        safe = url.path.strip("/").replace("/", "_") or "root"
        self.log_file = os.path.join(ARGS.log_dir, f"{seq:04d}-{self.command}-{safe}.json")
        self.entry = entry
        self.flush_log()

    def flush_log(self):
        with open(self.log_file, "w") as f:
            json.dump(self.entry, f, indent=2)

    def send_json(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("request-id", "req_capture_" + uuid.uuid4().hex[:12])
        self.send_header("x-request-id", "req_capture_" + uuid.uuid4().hex[:12])
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.entry["response"] = {"status": status, "json": obj}
        self.flush_log()

    def start_sse(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("request-id", "req_capture_" + uuid.uuid4().hex[:12])
        self.send_header("x-request-id", "req_capture_" + uuid.uuid4().hex[:12])
        self.end_headers()
        self.sent_events = []

    def sse(self, event, data):
        if event in ARGS.omit_event:
            return
        head = "" if ARGS.no_event_lines else f"event: {event}\n"
        payload = f"{head}data: {json.dumps(data)}\n\n".encode()
        self.wfile.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
        self.wfile.flush()
        self.sent_events.append(event)

    def end_sse(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
        self.entry["response"] = {"status": 200, "sse_events": self.sent_events}
        self.flush_log()

    # ---- routing ----------------------------------------------------------------
    def handle_any(self):
        self.record()
        body = self.req_body if isinstance(self.req_body, dict) else {}
        p = self.req_path.rstrip("/")
        if ARGS.fail_status and self.command == "POST" and p.endswith(("/messages", "/responses")):
            kind = {400: "invalid_request_error", 401: "authentication_error", 429: "rate_limit_error"}
            return self.send_json(ARGS.fail_status, {"type": "error", "error": {
                "type": kind.get(ARGS.fail_status, "api_error"), "message": f"capture: forced {ARGS.fail_status}"}})
        if self.command == "POST" and p.endswith("/messages/count_tokens"):
            return self.send_json(200, {"input_tokens": max(1, count_chars(body.get("messages")) // 4)})
        if self.command == "POST" and p.endswith("/messages"):
            return self.anthropic(body)
        if self.command == "POST" and p.endswith("/responses"):
            return self.openai_responses(body)
        err = {"error": {"type": "not_found_error", "message": f"capture: no route {self.command} {self.req_path}"}}
        return self.send_json(404, err)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = handle_any

    # ---- Anthropic Messages -------------------------------------------------------
    def anthropic(self, body):
        model = body.get("model", "claude-test")
        text = ARGS.text
        msg_id = "msg_" + uuid.uuid4().hex[:24]
        in_tok = max(1, count_chars(body.get("messages")) // 4)
        out_tok = max(1, len(text) // 4)
        usage = {"input_tokens": in_tok, "output_tokens": out_tok,
                 "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        if not body.get("stream"):
            return self.send_json(200, {
                "id": msg_id, "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn", "stop_sequence": None,
                "usage": {} if ARGS.no_usage else usage,
            })
        self.start_sse()
        start_usage = dict(usage, output_tokens=1)
        self.sse("message_start", {"type": "message_start", "message": {
            "id": msg_id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": {} if ARGS.no_usage else start_usage}})
        if ARGS.ping:
            self.sse("ping", {"type": "ping"})
        self.sse("content_block_start", {"type": "content_block_start", "index": 0,
                                         "content_block": {"type": "text", "text": ""}})
        for piece in split_text(text):
            self.sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                             "delta": {"type": "text_delta", "text": piece}})
        self.sse("content_block_stop", {"type": "content_block_stop", "index": 0})
        delta = {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}}
        if not ARGS.no_usage:
            delta["usage"] = {"output_tokens": out_tok}
        self.sse("message_delta", delta)
        self.sse("message_stop", {"type": "message_stop"})
        self.end_sse()

    # ---- OpenAI Responses ---------------------------------------------------------
    def openai_responses(self, body):
        model = body.get("model", "gpt-test")
        text = ARGS.text
        resp_id = "resp_" + uuid.uuid4().hex[:24]
        item_id = "msg_" + uuid.uuid4().hex[:24]
        in_tok = max(1, count_chars(body.get("input")) // 4)
        out_tok = max(1, len(text) // 4)
        usage = {"input_tokens": in_tok, "input_tokens_details": {"cached_tokens": 0},
                 "output_tokens": out_tok, "output_tokens_details": {"reasoning_tokens": 0},
                 "total_tokens": in_tok + out_tok}
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        item = {"id": item_id, "type": "message", "status": "completed", "role": "assistant", "content": [part]}
        if ARGS.no_item_ids:
            item.pop("id")
        now = int(time.time())

        def resp(status, output, with_usage):
            r = {"id": resp_id, "object": "response", "created_at": now, "status": status,
                 "model": model, "output": output, "parallel_tool_calls": True,
                 "tool_choice": body.get("tool_choice", "auto"), "tools": body.get("tools", []),
                 "store": body.get("store", False), "error": None, "incomplete_details": None,
                 "instructions": body.get("instructions"), "metadata": {},
                 "previous_response_id": None, "reasoning": body.get("reasoning"),
                 "temperature": 1.0, "top_p": 1.0, "text": {"format": {"type": "text"}},
                 "truncation": "disabled", "usage": usage if with_usage and not ARGS.no_usage else None}
            if status == "completed" and ARGS.bare_completed:
                r = {"id": resp_id, "object": "response", "status": "completed"}
                if not ARGS.no_usage:
                    r["usage"] = usage
            return r

        if not body.get("stream"):
            return self.send_json(200, dict(resp("completed", [item], True), output_text=text))
        self.start_sse()
        seq = [0]

        def ev(name, data):
            d = {"type": name}
            if not ARGS.no_sequence_number:
                d["sequence_number"] = seq[0]
                seq[0] += 1
            d.update(data)
            self.sse(name, d)

        ids = {} if ARGS.no_item_ids else {"item_id": item_id}
        ev("response.created", {"response": resp("in_progress", [], False)})
        ev("response.in_progress", {"response": resp("in_progress", [], False)})
        added = dict(item, status="in_progress", content=[])
        ev("response.output_item.added", {"output_index": 0, "item": added})
        ev("response.content_part.added", dict(ids, output_index=0, content_index=0,
                                               part=dict(part, text="")))
        for piece in split_text(text):
            ev("response.output_text.delta", dict(ids, output_index=0, content_index=0, delta=piece, logprobs=[]))
        ev("response.output_text.done", dict(ids, output_index=0, content_index=0, text=text, logprobs=[]))
        ev("response.content_part.done", dict(ids, output_index=0, content_index=0, part=part))
        ev("response.output_item.done", {"output_index": 0, "item": item})
        ev("response.completed", {"response": resp("completed", [item], True)})
        self.end_sse()


def split_text(text):
    words = text.split(" ")
    return [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]


def main():
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--log-dir", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", help="also write the port number here")
    ap.add_argument("--text", default="Hi there from the capture server!")
    ap.add_argument("--omit-event", action="append", default=[])
    ap.add_argument("--no-sequence-number", action="store_true")
    ap.add_argument("--no-item-ids", action="store_true")
    ap.add_argument("--bare-completed", action="store_true")
    ap.add_argument("--no-usage", action="store_true")
    ap.add_argument("--ping", action="store_true")
    ap.add_argument("--no-event-lines", action="store_true")
    ap.add_argument("--fail-status", type=int, help="answer every generation request with this HTTP error")
    ap.add_argument("--verbose", action="store_true")
    ARGS = ap.parse_args()
    if not ARGS.host.startswith("127.") and ARGS.host not in ("localhost", "::1"):
        sys.exit("capture: loopback only")
    os.makedirs(ARGS.log_dir, exist_ok=True)
    srv = ThreadingHTTPServer((ARGS.host, ARGS.port), Handler)
    srv.daemon_threads = True
    port = srv.server_address[1]
    if ARGS.port_file:
        with open(ARGS.port_file, "w") as f:
            f.write(str(port))
    print(f"listening on http://{ARGS.host}:{port}", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
