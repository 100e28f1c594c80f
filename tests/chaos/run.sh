#!/usr/bin/env bash
# Chaos run against real processes, loopback only, bounded in time (~1 minute):
# its own PostgreSQL cluster and Redis on free ports, two `sluice serve` instances sharing them,
# a local HTTP receiver that counts calls per Idempotency-Key. Then:
#   1. Redis frozen (SIGSTOP) for 3 s under load: slowest request, statuses, time to recover.
#   2. PostgreSQL stopped for 4 s: /readyz and gateway latency and status while it is down;
#      executions with an HTTP node running across the outage: calls per node (must be 1).
# Prints one line per figure. Needs: cargo, redis-server, PostgreSQL binaries, python3, curl.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice-target}"
cargo build -q -p sluice-server
BIN="$CARGO_TARGET_DIR/debug/sluice"

WORK=$(mktemp -d)
chmod 755 "$WORK"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done
  [ -n "${PGBIN:-}" ] && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/pg" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now_ms() { date +%s%3N; }
wait_for() { for _ in $(seq 1 100); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "FATAL: $*" >&2; exit 1; }

# PostgreSQL: a throw-away cluster owned by the postgres user.
PGBIN=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | head -n1)")
PGPORT=$(free_port)
mkdir -p "$WORK/pg" && chown postgres "$WORK/pg"
runuser -u postgres -- "$PGBIN/initdb" -D "$WORK/pg" -A trust -U postgres >/dev/null
pg_start() { runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/pg" -o "-p $PGPORT -k $WORK/pg -c listen_addresses=127.0.0.1" -l "$WORK/pg/server.log" -w start >/dev/null; }
pg_stop() { runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/pg" -m fast -w stop >/dev/null; }
pg_start
DB="postgres://postgres@127.0.0.1:$PGPORT/postgres"

# Redis.
RPORT=$(free_port)
redis-server --bind 127.0.0.1 --port "$RPORT" --save "" --appendonly no >/dev/null &
RPID=$!; PIDS+=("$RPID")
wait_for redis-cli -p "$RPORT" ping

# The receiver: counts calls per Idempotency-Key, answers after 300 ms.
RECV_PORT=$(free_port)
cat > "$WORK/recv.py" <<'EOF'
import http.server, sys, threading, time, collections, json
counts = collections.Counter(); lock = threading.Lock()
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        if self.path == "/counts":
            with lock: body = json.dumps(counts).encode()
        else:
            k = self.headers.get("idempotency-key", "")
            node = ":".join(k.split(":")[:2])
            with lock: counts[node] += 1
            time.sleep(0.3); body = b'{"ok":true}'
        self.send_response(200); self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body))); self.end_headers(); self.wfile.write(body)
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
EOF
python3 "$WORK/recv.py" "$RECV_PORT" &
PIDS+=($!)

ADMIN=sk-chaos-admin-0123456789abcdef
cat > "$WORK/sluice.toml" <<EOF
[rate_limits]
backend = "redis"
redis_url = "redis://127.0.0.1:$RPORT"
redis_timeout_ms = 50
key_prefix = "chaos:"
[executions]
allow_private_networks = true
EOF
start_sluice() {
  local port=$1
  SLUICE_DATABASE_URL=$DB SLUICE_ADMIN_KEY=$ADMIN SLUICE_LOG=warn \
    "$BIN" serve --demo --config "$WORK/sluice.toml" --listen "127.0.0.1:$port" >"$WORK/s$port.log" 2>&1 &
  PIDS+=($!)
  wait_for curl -sf "http://127.0.0.1:$port/healthz"
}
P1=$(free_port); P2=$(free_port)
start_sluice "$P1"; start_sluice "$P2"
DEMO_KEY=$(grep -o 'Demo key[^:]*: sk-[A-Za-z0-9]*' "$WORK/s$P1.log" | grep -o 'sk-.*')

chat() { # port → "status seconds"
  curl -s -o /dev/null -w '%{http_code} %{time_total}\n' --max-time 20 "http://127.0.0.1:$1/v1/chat/completions" \
    -H "Authorization: Bearer $DEMO_KEY" -H 'content-type: application/json' \
    -d '{"model": "demo", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}'
}
summary() { # label file
  awk -v label="$1" '{n++; s[$1]++; if ($2 > m) m = $2} END {printf "%s: %d requests, slowest %.0f ms, statuses", label, n, m * 1000; for (k in s) printf " %s×%d", k, s[k]; print ""}' "$2"
}

# 1. Redis frozen for 3 s.
kill -STOP "$RPID"
end=$(( $(now_ms) + 3000 ))
: > "$WORK/frozen.txt"
while [ "$(now_ms)" -lt "$end" ]; do chat "$P1" >> "$WORK/frozen.txt"; chat "$P2" >> "$WORK/frozen.txt"; done
kill -CONT "$RPID"
t0=$(now_ms)
until curl -s "http://127.0.0.1:$P1/readyz" | grep -q '"backend":"redis","status":"ok"\|"status":"ok","backend":"redis"'; do
  [ $(( $(now_ms) - t0 )) -lt 5000 ] || { echo "Redis never reported back" >&2; exit 1; }; sleep 0.02
done
summary "redis frozen 3 s (deadline 50 ms, fail_open)" "$WORK/frozen.txt"
echo "redis back: limits shared again after $(( $(now_ms) - t0 )) ms"

# 2. PostgreSQL stopped for 4 s, with executions in flight.
WF=$(curl -s "http://127.0.0.1:$P1/v1/workflows" -H "Authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d "{\"name\": \"chaos\", \"nodes\": [{\"id\": \"a\", \"type\": \"http_request\", \"params\": {\"url\": \"http://127.0.0.1:$RECV_PORT/a\"}}, {\"id\": \"b\", \"type\": \"http_request\", \"params\": {\"url\": \"http://127.0.0.1:$RECV_PORT/b\"}}], \"edges\": [{\"from\": \"a\", \"to\": \"b\"}]}" \
  | python3 -c 'import sys, json; print(json.load(sys.stdin)["id"])')
EXECS=()
for _ in $(seq 1 20); do
  EXECS+=("$(curl -s "http://127.0.0.1:$P1/v1/workflows/$WF/executions" -H "Authorization: Bearer $ADMIN" \
    -H 'content-type: application/json' -d '{}' | python3 -c 'import sys, json; print(json.load(sys.stdin)["id"])')")
done
sleep 0.5
pg_stop
t_stop=$(now_ms)
: > "$WORK/pgdown.txt"; : > "$WORK/ready.txt"
while [ $(( $(now_ms) - t_stop )) -lt 4000 ]; do
  curl -s -o /dev/null -w '%{http_code} %{time_total}\n' --max-time 10 "http://127.0.0.1:$P2/readyz" >> "$WORK/ready.txt"
  chat "$P2" >> "$WORK/pgdown.txt"
done
pg_start
summary "postgres stopped 4 s: /readyz" "$WORK/ready.txt"
summary "postgres stopped 4 s: chat (demo key)" "$WORK/pgdown.txt"

# Every execution ends; each node's side effect happened exactly once.
deadline=$(( $(now_ms) + 30000 ))
for x in "${EXECS[@]}"; do
  while :; do
    st=$(curl -s "http://127.0.0.1:$P1/v1/executions/$x" -H "Authorization: Bearer $ADMIN" | python3 -c 'import sys, json; print(json.load(sys.stdin).get("status", "?"))' 2>/dev/null || echo "?")
    case "$st" in succeeded|failed|timed_out|cancelled) break ;; esac
    [ "$(now_ms)" -lt "$deadline" ] || { echo "execution $x still $st" >&2; exit 1; }
    sleep 0.2
  done
done
curl -s "http://127.0.0.1:$RECV_PORT/counts" | python3 -c '
import sys, json, collections
c = json.load(sys.stdin); per = collections.Counter(c.values())
print("executions across the outage: %d node calls, calls per node: %s" % (sum(c.values()), dict(sorted(per.items()))))
sys.exit(0 if set(per) == {1} else 3)'
