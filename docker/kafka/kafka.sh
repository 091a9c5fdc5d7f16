#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft) for development and tests, without Docker.
#
#   kafka.sh start    resolve jars once (Maven), format storage once, start, wait until it answers
#   kafka.sh stop     stop the broker started here (by pid file)
#   kafka.sh status   say whether it runs
#   kafka.sh crash    kill -9 the broker started here (fault tests)
#
# Everything it writes lives under $KAFKA_HOME_DIR (default: <repo>/.kafka, git-ignored):
# classpath.txt (resolved once; later runs never touch the network), data/, logs/, kafka.pid.
# When KAFKA_BOOTSTRAP_SERVERS points somewhere else than localhost:9092, the user runs their own
# cluster: start and stop do nothing.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
home=${KAFKA_HOME_DIR:-$repo/.kafka}
pidfile=$home/kafka.pid
logs=$home/logs
data=$home/data
classpath_file=$home/classpath.txt
pom_stamp=$home/classpath.pom.sha
port=${KAFKA_PORT:-9092}
# For a second broker beside the default one (the security tests): a config file appended to
# server.properties (listeners, TLS, SASL), and extra arguments of the storage formatter.
extra_config=${KAFKA_EXTRA_CONFIG:-}
format_args=${KAFKA_FORMAT_ARGS:-}
start_timeout_s=${KAFKA_START_TIMEOUT_S:-90}

external_cluster() {
  local servers=${KAFKA_BOOTSTRAP_SERVERS:-localhost:9092}
  [[ "$servers" != "localhost:9092" && "$servers" != "127.0.0.1:9092" ]]
}

running() {
  [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
}

resolve_classpath() {
  local sha
  sha=$(sha256sum "$here/pom.xml" | cut -d' ' -f1)
  if [[ -s "$classpath_file" && -f "$pom_stamp" && "$(cat "$pom_stamp")" == "$sha" ]]; then
    return
  fi
  # another home beside the default one reuses the default one's resolved classpath
  local default_home=$repo/.kafka
  if [[ "$home" != "$default_home" && -s "$default_home/classpath.txt" \
        && "$(cat "$default_home/classpath.pom.sha" 2>/dev/null)" == "$sha" ]]; then
    cp "$default_home/classpath.txt" "$classpath_file"
    echo "$sha" >"$pom_stamp"
    return
  fi
  command -v mvn >/dev/null || { echo "kafka: Maven (mvn) is needed to fetch the broker's jars" >&2; exit 1; }
  echo "kafka: resolving the broker's jars from Maven Central (once)..."
  mvn -q -B -f "$here/pom.xml" dependency:build-classpath -Dmdep.outputFile="$classpath_file.tmp" \
    >"$home/mvn.log" 2>&1 || { echo "kafka: mvn failed, see $home/mvn.log" >&2; tail -20 "$home/mvn.log" >&2; exit 1; }
  mv "$classpath_file.tmp" "$classpath_file"
  echo "$sha" >"$pom_stamp"
}

java_args() {
  # The JVM flags and classpath shared by the storage formatter and the broker.
  echo -Xms256m -Xmx768m -XX:+UseG1GC -Dlog4j2.configurationFile="$here/log4j2.yaml" \
    -Dkafka.logs.dir="$logs" -cp "$(cat "$classpath_file")"
}

config() {
  # The checked-in properties plus this checkout's data folder (and an extra file, if given).
  cat "$here/server.properties"
  echo "log.dirs=$data"
  if [[ -n "$extra_config" ]]; then cat "$extra_config"; fi
}

format_storage() {
  [[ -f "$data/meta.properties" ]] && return
  mkdir -p "$data"
  local cluster_id
  cluster_id=$(python3 "$here/cluster_id.py")
  config >"$home/server.properties"
  # shellcheck disable=SC2086  # format_args is meant to split into words
  java $(java_args) kafka.tools.StorageTool format -t "$cluster_id" -c "$home/server.properties" $format_args >"$logs/format.log" 2>&1 \
    || { echo "kafka: formatting storage failed, see $logs/format.log" >&2; cat "$logs/format.log" >&2; exit 1; }
}

started_since() {
  # a "Kafka Server started" line stamped at or after $1 in the log or its rolled copies
  cat "$logs"/server.log* 2>/dev/null | awk -v since="[$1" '
    /Kafka Server started/ && substr($0, 1, 20) >= since { found = 1 }
    END { exit !found }'
}

start() {
  if external_cluster; then
    echo "kafka: KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP_SERVERS, using that cluster; nothing to start"
    return
  fi
  if running; then
    echo "kafka: already running (pid $(cat "$pidfile"))"
    return
  fi
  if port_open; then
    echo "kafka: something already listens on localhost:$port; using it"
    return
  fi
  command -v java >/dev/null || { echo "kafka: Java 17 is needed to run the broker" >&2; exit 1; }
  mkdir -p "$home" "$logs"
  resolve_classpath
  format_storage
  config >"$home/server.properties"
  # setsid: the broker outlives the shell (and make) that started it, and ignores its hang-up.
  # shellcheck disable=SC2046  # java_args is meant to split into words
  # Only a start line written after this moment counts (a restart appends, and the log rolls).
  local since
  since=$(date '+%Y-%m-%d %H:%M:%S')
  setsid java $(java_args) kafka.Kafka "$home/server.properties" >"$logs/stdout.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  local deadline=$((SECONDS + start_timeout_s))
  until port_open && started_since "$since"; do
    if ! running; then
      echo "kafka: broker exited during start-up; last lines of $logs/server.log:" >&2
      tail -n 30 "$logs/server.log" "$logs/stdout.log" >&2 || true
      rm -f "$pidfile"
      exit 1
    fi
    if ((SECONDS >= deadline)); then
      echo "kafka: broker did not answer within ${start_timeout_s}s; see $logs/server.log" >&2
      exit 1
    fi
    sleep 0.5
  done
  echo "kafka: broker running on localhost:$port (pid $(cat "$pidfile")), logs in $logs"
}

stop() {
  if ! running; then
    rm -f "$pidfile"
    echo "kafka: not running"
    return
  fi
  local pid
  pid=$(cat "$pidfile")
  kill "$pid"
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "kafka: broker did not stop in 30s; killing it"
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
  echo "kafka: stopped"
}

crash() {
  # kill -9, for fault tests: no clean shutdown, the next start recovers the logs
  if running; then
    kill -9 "$(cat "$pidfile")" 2>/dev/null || true
    while running; do sleep 0.1; done
  fi
  rm -f "$pidfile"
  echo "kafka: killed"
}

status() {
  if running; then echo "kafka: running (pid $(cat "$pidfile"))"; else echo "kafka: not running"; exit 1; fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  crash) crash ;;
  *) echo "usage: $0 start|stop|status|crash" >&2; exit 2 ;;
esac
