#!/usr/bin/env bash
# Load benchmark: cedargate's /authorize beside the HTTP floor and the Cerbos peer, in one
# run on this machine, with wrk on loopback. docs/benchmarks.md explains the scenarios
# and shows results.
#
# Usage: bench/load.sh [--quick] [--no-peer]
#   --quick    one short run per scenario on a debug build; checks that everything still
#              runs (CI uses it), its numbers mean nothing
#   --no-peer  leave out Cerbos (it is installed from the npm registry on first use)
#   --reload-only  run only the reload phase
# Env: WORK=/tmp/cedargate-bench  THREADS=2 CONNS=50 DURATION=10s RUNS=3
#      ENTITIES=10000 (store size of the main bundle)
#      RELOAD_ENTITIES=100000 RELOAD_GRANTS=10000 (bundle of the reload phase; 0 skips it)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${CEDARGATE_BENCH_SHARED:-$ROOT/../shared/bench}
WORK=${WORK:-/tmp/cedargate-bench}
QUICK=0 PEER=1 RELOAD_ONLY=0
for arg in "$@"; do
  case "$arg" in
    --quick) QUICK=1 ;;
    --no-peer) PEER=0 ;;
    --reload-only) RELOAD_ONLY=1 PEER=0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done
THREADS=${THREADS:-2} CONNS=${CONNS:-50}
if [ "$QUICK" = 1 ]; then
  DURATION=${DURATION:-2s} RUNS=${RUNS:-1} WARMUP=1s
  ENTITIES=${ENTITIES:-2000} RELOAD_ENTITIES=${RELOAD_ENTITIES:-5000} RELOAD_GRANTS=${RELOAD_GRANTS:-500}
else
  DURATION=${DURATION:-10s} RUNS=${RUNS:-3} WARMUP=3s
  ENTITIES=${ENTITIES:-10000} RELOAD_ENTITIES=${RELOAD_ENTITIES:-100000} RELOAD_GRANTS=${RELOAD_GRANTS:-10000}
fi
CEDARGATE_PORT=8191 FLOOR_PORT=8192
RESULTS=$WORK/results
mkdir -p "$WORK" "$RESULTS"
: > "$RESULTS/summary.jsonl"

if [ ! -d "$SHARED/cedar-equivalent" ]; then
  echo "error: $SHARED/cedar-equivalent not found; set CEDARGATE_BENCH_SHARED" >&2
  exit 1
fi
if ! command -v wrk >/dev/null; then
  echo "installing wrk from Debian's packages" >&2
  apt-get install -y wrk >/dev/null
fi

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [ "$PEER" = 1 ]; then WORK=$WORK "$SHARED/cerbos-server.sh" stop >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

PROFILE=$([ "$QUICK" = 1 ] && echo debug || echo release)
echo "== building ($PROFILE)" >&2
(cd "$ROOT" && cargo build --locked --quiet $([ "$PROFILE" = release ] && echo --release) \
  --bin cedargate --example bench-floor --example bench-bundle)
BIN=$ROOT/target/$PROFILE/cedargate
GEN=$ROOT/target/$PROFILE/examples/bench-bundle

wait_http() {  # URL: waits until it answers 2xx, at most 120 s
  for _ in $(seq 1 600); do
    curl -sf -o /dev/null "$1" && return 0
    sleep 0.2
  done
  echo "error: $1 did not come up" >&2
  return 1
}

# A bundle whose clock puts the benchmark request at 11:00 local time: the zone is
# chosen from the current UTC hour, so office-hours policies allow it.
make_bundle() {  # DIR ENTITIES GRANTS [DEV_KEY_DIR]
  rm -rf "$1"
  "$GEN" "$1" "$2" "$3"
  # Bundles share one development key, so one set of tokens works for all.
  if [ -n "${4:-}" ]; then cp -r "$4" "$1/.cedargate-dev"; fi
  local hour offset zone
  hour=$(date -u +%H)
  offset=$(( (11 - 10#$hour + 24) % 24 ))
  [ "$offset" -gt 12 ] && offset=$((offset - 24))
  if [ "$offset" -eq 0 ]; then zone=UTC
  elif [ "$offset" -gt 0 ]; then zone="Etc/GMT-$offset"
  else zone="Etc/GMT+$(( -offset ))"; fi
  sed -i -e "s|time_zone = \"UTC\"|time_zone = \"$zone\"|" \
         -e "s|listen = \"127.0.0.1:0\"|listen = \"127.0.0.1:$CEDARGATE_PORT\"|" "$1/cedargate.toml"
  "$BIN" validate --config "$1/cedargate.toml" >/dev/null
}

start_cedargate() {  # DIR; the decision log goes to a file, as a deployment would keep it
  "$BIN" serve --config "$1/cedargate.toml" > "$WORK/decisions.log" 2> "$WORK/cedargate.err" &
  CEDARGATE_PID=$!
  PIDS+=("$CEDARGATE_PID")
  wait_http "http://127.0.0.1:$CEDARGATE_PORT/readyz"
}

stop_cedargate() {
  kill "$CEDARGATE_PID" 2>/dev/null || true
  wait "$CEDARGATE_PID" 2>/dev/null || true
}

# run LABEL URL PID [env assignments...]: RUNS wrk runs, the median by throughput kept.
run() {
  local label=$1 url=$2 pid=$3
  shift 3
  local out="$RESULTS/$label.jsonl"
  : > "$out"
  env "$@" THREADS="$THREADS" RESULT_FILE= wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" \
    -s "$ROOT/bench/wrk-authorize.lua" "$url" > /dev/null
  for _ in $(seq 1 "$RUNS"); do
    local c0 c1
    c0=$(awk '{print $14+$15}' "/proc/$pid/stat")
    env "$@" THREADS="$THREADS" RESULT_FILE="$out.run" wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" \
      --latency -s "$ROOT/bench/wrk-authorize.lua" "$url" > "$RESULTS/$label.wrk.txt"
    c1=$(awk '{print $14+$15}' "/proc/$pid/stat")
    python3 - "$out.run" "$out" "$((c1 - c0))" "$(getconf CLK_TCK)" <<'PY'
import json, sys
run = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
run["server_cpu_us_per_req"] = round(int(sys.argv[3]) / int(sys.argv[4]) * 1e6 / max(run["requests"], 1), 1)
open(sys.argv[2], "a").write(json.dumps(run) + "\n")
PY
    rm -f "$out.run"
  done
  python3 - "$out" "$label" "$RESULTS/summary.jsonl" <<'PY'
import json, sys
runs = sorted((json.loads(l) for l in open(sys.argv[1]) if l.strip()), key=lambda r: r["rps"])
m = dict(runs[len(runs) // 2], label=sys.argv[2], all_rps=[r["rps"] for r in runs])
open(sys.argv[3], "a").write(json.dumps(m) + "\n")
print("%-28s %9.0f req/s  p50 %6.2f ms  p99 %6.2f ms  server CPU %6.1f us/req  errors %d non-2xx %d"
      % (m["label"], m["rps"], m["p50_us"] / 1000, m["p99_us"] / 1000,
         m["server_cpu_us_per_req"], m["errors"], m["non2xx"]))
PY
}

URL="http://127.0.0.1:$CEDARGATE_PORT/authorize"
BODY=$WORK/body.json
echo '{"action":"read","resource":{"type":"Document","id":"d7"},"context":{"mfa":true}}' > "$BODY"

echo "== bundle: $ENTITIES entities, 20 policies" >&2
make_bundle "$WORK/bundle" "$ENTITIES" 0
TOKEN_COUNT=$([ "$QUICK" = 1 ] && echo 20000 || echo 400000)
echo "== minting $TOKEN_COUNT distinct ES256 tokens" >&2
"$GEN" tokens "$WORK/bundle" "$TOKEN_COUNT" "$WORK/tokens.txt"
ONE_TOKEN=$(head -1 "$WORK/tokens.txt")

if [ "$RELOAD_ONLY" = 0 ]; then
echo "== floor: bare axum JSON handler" >&2
"$ROOT/target/$PROFILE/examples/bench-floor" "127.0.0.1:$FLOOR_PORT" &
FLOOR_PID=$!
PIDS+=("$FLOOR_PID")
sleep 0.5
run floor "http://127.0.0.1:$FLOOR_PORT/authorize" "$FLOOR_PID" BODY_FILE="$BODY"
kill "$FLOOR_PID"

start_cedargate "$WORK/bundle"
# Sanity: the benchmark request must be allowed, or the numbers measure a deny path.
answer=$(curl -s -X POST -H "Authorization: Bearer $ONE_TOKEN" -H 'X-Forwarded-For: 10.1.2.3' \
  -H 'Content-Type: application/json' --data-binary @"$BODY" "http://127.0.0.1:$CEDARGATE_PORT/authorize")
case "$answer" in
  *'"decision":"allow"'*) ;;
  *) echo "error: the benchmark request was not allowed: $answer" >&2; exit 1 ;;
esac
run cedargate-reused-token "$URL" "$CEDARGATE_PID" BODY_FILE="$BODY" \
  HEADERS="Authorization: Bearer $ONE_TOKEN|X-Forwarded-For: 10.1.2.3"
run cedargate-fresh-es256 "$URL" "$CEDARGATE_PID" BODY_FILE="$BODY" TOKENS_FILE="$WORK/tokens.txt" \
  TOKEN_HEADER="Authorization: Bearer {{TOKEN}}" HEADERS="X-Forwarded-For: 10.1.2.3"
stop_cedargate

if [ "$PEER" = 1 ]; then
  echo "== peer: Cerbos" >&2
  CERBOS_JWKS="$WORK/bundle/.cedargate-dev/jwks.json" WORK=$WORK "$SHARED/cerbos-server.sh" start >&2
  CERBOS_PID=$(cat "$WORK/cerbos.pid")
  run cerbos "http://127.0.0.1:3592/api/check/resources" "$CERBOS_PID" \
    BODY_FILE="$SHARED/cerbos/check-body.json"
  python3 - "$SHARED/cerbos/check-body.json" "$WORK/cerbos-jwt-body.json" <<'PY'
import json, sys
body = json.load(open(sys.argv[1]))
body["auxData"] = {"jwt": {"token": "{{TOKEN}}", "keySetId": "local"}}
json.dump(body, open(sys.argv[2], "w"))
PY
  run cerbos-fresh-es256 "http://127.0.0.1:3592/api/check/resources" "$CERBOS_PID" \
    BODY_FILE="$WORK/cerbos-jwt-body.json" TOKENS_FILE="$WORK/tokens.txt"
  WORK=$WORK "$SHARED/cerbos-server.sh" stop >&2
fi
fi

if [ "$RELOAD_ENTITIES" != 0 ]; then
  echo "== reload: $RELOAD_ENTITIES entities, $((RELOAD_GRANTS + 20)) policies" >&2
  make_bundle "$WORK/reload-bundle" "$RELOAD_ENTITIES" "$RELOAD_GRANTS" "$WORK/bundle/.cedargate-dev"
  sed -i 's|^watch = false|watch = true|' "$WORK/reload-bundle/cedargate.toml"
  start_cedargate "$WORK/reload-bundle"
  rss_kib=$(awk '/^VmRSS/ {print $2}' "/proc/$CEDARGATE_PID/status")
  run reload-steady "$URL" "$CEDARGATE_PID" BODY_FILE="$BODY" \
    HEADERS="Authorization: Bearer $ONE_TOKEN|X-Forwarded-For: 10.1.2.3"
  # The same load while the bundle changes again and again: each change adds a comment
  # line, so the revision changes and the whole bundle is loaded again. The next change
  # waits until the server answers with the new revision, and that wait is the reload time
  # as a client sees it (debounce, settle interval and load).
  : > "$RESULTS/reload-durations.txt"
  (
    revision() { curl -s "http://127.0.0.1:$CEDARGATE_PORT/readyz" | sed -E 's/.*"revision":"([^"]*)".*/\1/'; }
    for i in $(seq 1 1000); do
      before=$(revision)
      echo "// reload $i" >> "$WORK/reload-bundle/policies/base.cedar"
      start=$(date +%s%N)
      while [ "$(revision)" = "$before" ]; do
        sleep 0.05
        [ $(( ($(date +%s%N) - start) / 1000000000 )) -ge 60 ] && break
      done
      echo $(( ($(date +%s%N) - start) / 1000000 )) >> "$RESULTS/reload-durations.txt"
      sleep 1
    done
  ) &
  TOUCHER=$!
  PIDS+=("$TOUCHER")
  run reload-during "$URL" "$CEDARGATE_PID" BODY_FILE="$BODY" \
    HEADERS="Authorization: Bearer $ONE_TOKEN|X-Forwarded-For: 10.1.2.3"
  kill "$TOUCHER" 2>/dev/null || true
  hwm_kib=$(awk '/^VmHWM/ {print $2}' "/proc/$CEDARGATE_PID/status")
  curl -s "http://127.0.0.1:$CEDARGATE_PORT/status" > "$RESULTS/reload-status.json"
  stop_cedargate
  # How long the server itself took to read and check each bundle.
  grep -o 'load_ms=[0-9]*' "$WORK/cedargate.err" | grep -o '[0-9]*$' > "$RESULTS/reload-load-ms.txt" || true
  python3 - "$rss_kib" "$hwm_kib" "$RESULTS/reload-durations.txt" "$RESULTS/reload-load-ms.txt" \
    "$RESULTS/summary.jsonl" <<'PY'
import json, sys
def read(path):
    return sorted(float(x) for x in open(path) if x.strip())
seen, loads = read(sys.argv[3]), read(sys.argv[4])
line = {"label": "reload-memory", "rss_after_load_mib": round(int(sys.argv[1]) / 1024, 1),
        "peak_rss_mib": round(int(sys.argv[2]) / 1024, 1), "reloads": len(seen),
        "change_to_new_revision_ms": seen, "load_ms": loads}
open(sys.argv[5], "a").write(json.dumps(line) + "\n")
print("memory after load %.1f MiB, peak %.1f MiB" % (line["rss_after_load_mib"], line["peak_rss_mib"]))
print("reloads: %d; change to new revision (ms): %s; server load time (ms): %s" % (len(seen), seen, loads))
PY
fi

echo "== ratios" >&2
python3 - "$RESULTS/summary.jsonl" "$QUICK" <<'PY'
import json, sys
quick = sys.argv[2] == "1"
rows = {r["label"]: r for r in (json.loads(l) for l in open(sys.argv[1]) if l.strip())}
def ratio(a, b, key="rps"):
    if a in rows and b in rows and rows[b][key]:
        return rows[a][key] / rows[b][key]
def show(text, value, target, higher_is_better=True):
    if value is None:
        print("%-62s   n/a" % text); return
    met = value >= target if higher_is_better else value <= target
    verdict = "quick run, not a measurement" if quick else ("met" if met else "NOT met")
    print("%-62s %6.2f  (target %s %.1f: %s)" % (text, value, ">=" if higher_is_better else "<=",
          target, verdict))
show("reused token: throughput / floor throughput", ratio("cedargate-reused-token", "floor"), 0.5)
show("reused token: p99 / floor p99", ratio("cedargate-reused-token", "floor", "p99_us"), 2.0, False)
show("fresh ES256 token: throughput / Cerbos with ES256 token", ratio("cedargate-fresh-es256", "cerbos-fresh-es256"), 3.0)
show("p99 during reloads / steady p99", ratio("reload-during", "reload-steady", "p99_us"), 2.0, False)
PY
