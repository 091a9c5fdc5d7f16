#!/usr/bin/env bash
# make demo: broker + worker in the background, a generated dataset produced, counts printed.
# Every run uses a fresh topic prefix, so demos never mix; `make down` stops the worker and broker.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=.venv/bin
RUN=.demo
LAUNCHES=${DEMO_LAUNCHES:-200000}
mkdir -p "$RUN"

# Waited for, as `make down` does: a worker takes seconds to stop, and the new one refuses to
# start while the old one still holds WEB_PORT.
for process in worker notifier; do
  if [ -f "$RUN/$process.pid" ] && kill -0 "$(cat "$RUN/$process.pid")" 2>/dev/null; then
    echo "demo: stopping the previous demo $process"
    pid=$(cat "$RUN/$process.pid")
    kill "$pid" || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then
      kill -9 "$pid" || true
      echo "demo: killed the previous demo $process (still running after 20 s)"
    fi
  fi
done

export TOPIC_PREFIX="demo-$(date +%Y%m%d%H%M%S)-"
export STATE_DIR="$RUN/state-${TOPIC_PREFIX%-}"
export WEB_PORT=${WEB_PORT:-6066}
echo "$TOPIC_PREFIX" >"$RUN/prefix"

echo "== topics (prefix $TOPIC_PREFIX)"
$BIN/active-learners topics | tail -1

echo "== worker (log: $RUN/worker.log, dashboard: http://127.0.0.1:$WEB_PORT/)"
nohup $BIN/active-learners worker >"$RUN/worker.log" 2>&1 &
echo $! >"$RUN/worker.pid"

echo "== notifier (log: $RUN/notifier.log; without SMTP_HOST, e-mails go to $STATE_DIR/outbox)"
nohup $BIN/active-learners notifier >"$RUN/notifier.log" 2>&1 &
echo $! >"$RUN/notifier.pid"

echo "== dataset: $LAUNCHES launches over 24 tenants (12-, 3- and 1-month licenses, month-end"
echo "   anchors, six time zones, untracked and admin launches, duplicates, out of order),"
echo "   and every learner's team and learning role"
$BIN/active-learners generate --launches "$LAUNCHES" --now "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --out "$RUN/dataset.jsonl"
$BIN/active-learners produce "$RUN/dataset.jsonl"

echo "== waiting for the counts to settle"
start=$(date +%s)
$BIN/active-learners settle --timeout 1800
echo "   ($LAUNCHES launches in $(( $(date +%s) - start ))s after the last one was produced)"

echo
echo "== Active Learners, current window of every tenant"
$BIN/active-learners counts --current
echo
$BIN/active-learners verify "$RUN/dataset.jsonl"

echo
echo "== the dashboard's API (http://127.0.0.1:$WEB_PORT/api/tenants) against the count topic"
$BIN/python - <<PY
import json, time, urllib.request
from streams.config.settings import Settings
from streams.kafka.io import current_counts
base = "http://127.0.0.1:$WEB_PORT"
deadline = time.monotonic() + 60
while not json.load(urllib.request.urlopen(base + "/health"))["read_model"]:
    if time.monotonic() > deadline:
        raise SystemExit("demo: the worker's read model did not catch up within 60 s")
    time.sleep(0.5)
counts = current_counts(Settings.from_env())
deadline = time.monotonic() + 30
while True:
    tenants = json.load(urllib.request.urlopen(base + "/api/tenants"))["tenants"]
    differ = [t["tenant_id"] for t in tenants
              if counts.get((t["tenant_id"], t["window"]["start"]), {}).get("active_learners", 0)
              != t["active_learners"]]
    if not differ or time.monotonic() > deadline:
        break
    time.sleep(0.5)
if differ:
    raise SystemExit(f"demo: the API differs from the count topic for {differ}")
top = tenants and max(tenants, key=lambda t: t["utilization_pct"] or 0)
print(f"{len(tenants)} tenants, every one equal to the count topic; the most utilized: "
      f"{top['tenant_id']} at {top['utilization_pct']:.1f} % of {top['learner_limit']:,}")
PY

echo
echo "== threshold events (80/90/100 % of each licensed limit, per window)"
$BIN/python - <<'PY'
import json, os
from collections import Counter
from streams.config.settings import Settings
from streams.kafka.io import read_topic
events = [json.loads(v) for _, v in read_topic(Settings.from_env(), "threshold-events") if v]
by_kind = Counter((e["direction"], e["threshold_pct"]) for e in events)
print(f"{len(events)} events: " + ", ".join(f"{d} {p}%: {n}" for (d, p), n in sorted(by_kind.items())))
for e in sorted(events, key=lambda e: e["window"]["start"])[-5:]:
    print(f"  {e['tenant_id']} {e['window']['start']}: {e['direction']} {e['threshold_pct']}% "
          f"({e['active_learners']} of {e['learner_limit']}) -> {', '.join(e['notify'])}")
PY

echo
echo "== a team deletion, previewed (nothing is deleted): the attempts of tenant-000's sales team"
$BIN/active-learners delete --tenant tenant-000 --team sales --preview --timeout 120

outbox="$STATE_DIR/outbox"
mails=$(ls "$outbox" 2>/dev/null | wc -l)
echo "e-mails: $mails written to $outbox (events of windows that ended over 7 days ago are not mailed;"
echo "         set SMTP_HOST to send them instead; see $RUN/notifier.log)"
echo
echo "The worker keeps running. Open the dashboard: http://127.0.0.1:$WEB_PORT/"
echo "Or try:"
echo "  TOPIC_PREFIX=$TOPIC_PREFIX $BIN/active-learners counts --tenant tenant-003"
echo "  curl -s http://127.0.0.1:$WEB_PORT/api/tenants/tenant-003"
echo "  curl -s http://127.0.0.1:$WEB_PORT/metrics | grep active_learners_tenant_"
echo "Stop everything with: make down"
