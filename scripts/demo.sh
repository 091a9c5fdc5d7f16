#!/usr/bin/env bash
# make demo: broker + worker in the background, a generated dataset produced, counts printed.
# Every run uses a fresh topic prefix, so demos never mix; `make down` stops the worker and broker.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=.venv/bin
RUN=.demo
LAUNCHES=${DEMO_LAUNCHES:-200000}
mkdir -p "$RUN"

if [ -f "$RUN/worker.pid" ] && kill -0 "$(cat "$RUN/worker.pid")" 2>/dev/null; then
  echo "demo: stopping the previous demo worker"
  kill "$(cat "$RUN/worker.pid")" || true
  sleep 2
fi

export TOPIC_PREFIX="demo-$(date +%Y%m%d%H%M%S)-"
export STATE_DIR="$RUN/state-${TOPIC_PREFIX%-}"
export WEB_PORT=${WEB_PORT:-6066}
echo "$TOPIC_PREFIX" >"$RUN/prefix"

echo "== topics (prefix $TOPIC_PREFIX)"
$BIN/active-learners topics | tail -1

echo "== worker (log: $RUN/worker.log, metrics: http://127.0.0.1:$WEB_PORT/metrics)"
nohup $BIN/active-learners worker >"$RUN/worker.log" 2>&1 &
echo $! >"$RUN/worker.pid"

echo "== dataset: $LAUNCHES launches over 24 tenants (12-, 3- and 1-month licenses, month-end"
echo "   anchors, six time zones, untracked and admin launches, duplicates, out of order)"
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
echo "The worker keeps running. Try:"
echo "  TOPIC_PREFIX=$TOPIC_PREFIX $BIN/active-learners counts --tenant tenant-003"
echo "  curl -s http://127.0.0.1:$WEB_PORT/metrics | grep active_learners_"
echo "Stop everything with: make down"
