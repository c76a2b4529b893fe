#!/usr/bin/env bash
# Starts and stops the official Google Pub/Sub and Firestore emulators for local runs and tests.
#
#   scripts/emulators.sh start    start both on free loopback ports (no-op if already running)
#   scripts/emulators.sh stop     stop what `start` started
#   scripts/emulators.sh status   exit 0 if both answer
#
# State lives in .emulators/env (sourceable: PUBSUB_EMULATOR_HOST, FIRESTORE_EMULATOR_HOST and the pids),
# which the Makefile, the tests and the demo read. Logs go to .emulators/*.log.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE_DIR="${PROPS_EMULATOR_DIR:-$ROOT/.emulators}"
STATE_FILE="$STATE_DIR/env"
PUBSUB_JAR="${PUBSUB_EMULATOR_JAR:-/usr/lib/google-cloud-sdk/platform/pubsub-emulator/lib/cloud-pubsub-emulator-0.8.20-all.jar}"
FIRESTORE_JAR="${FIRESTORE_EMULATOR_JAR:-/usr/lib/google-cloud-sdk/platform/cloud-firestore-emulator/cloud-firestore-emulator.jar}"
STARTUP_TIMEOUT_SECS="${PROPS_EMULATOR_STARTUP_SECS:-90}"

die() { echo "emulators: $*" >&2; exit 1; }

check_prerequisites() {
  command -v java >/dev/null || die "java not found on PATH (the emulators need Java 17)"
  [ -f "$PUBSUB_JAR" ] || die "Pub/Sub emulator jar not found at $PUBSUB_JAR (set PUBSUB_EMULATOR_JAR)"
  [ -f "$FIRESTORE_JAR" ] || die "Firestore emulator jar not found at $FIRESTORE_JAR (set FIRESTORE_EMULATOR_JAR)"
  command -v curl >/dev/null || die "curl not found on PATH (used to wait for the emulators)"
}

# Asks the kernel for a free port by binding port 0; avoids the default emulator ports (8085, 8080)
# so a developer's own emulators are never touched.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

answers() { curl -s -o /dev/null --max-time 2 "http://$1/"; }

alive() {
  [ -f "$STATE_FILE" ] || return 1
  # shellcheck disable=SC1090
  . "$STATE_FILE"
  kill -0 "$PUBSUB_PID" 2>/dev/null && kill -0 "$FIRESTORE_PID" 2>/dev/null \
    && answers "$PUBSUB_EMULATOR_HOST" && answers "$FIRESTORE_EMULATOR_HOST"
}

wait_for() {
  local name=$1 host=$2 pid=$3 log=$4 waited=0
  until answers "$host"; do
    kill -0 "$pid" 2>/dev/null || { tail -20 "$log" >&2; die "$name emulator exited during start-up (log: $log)"; }
    [ "$waited" -lt "$((STARTUP_TIMEOUT_SECS * 2))" ] || { tail -20 "$log" >&2; die "$name emulator did not answer on $host within ${STARTUP_TIMEOUT_SECS}s"; }
    sleep 0.5; waited=$((waited + 1))
  done
}

start() {
  if alive; then echo "emulators already running (pubsub $PUBSUB_EMULATOR_HOST, firestore $FIRESTORE_EMULATOR_HOST)"; return 0; fi
  check_prerequisites
  mkdir -p "$STATE_DIR"
  local pubsub_port firestore_port
  pubsub_port=$(free_port); firestore_port=$(free_port)
  while [ "$firestore_port" = "$pubsub_port" ]; do firestore_port=$(free_port); done
  # setsid: the emulators outlive this script and are not hit by the terminal's ctrl-c.
  setsid java -jar "$PUBSUB_JAR" --host=127.0.0.1 --port="$pubsub_port" >"$STATE_DIR/pubsub.log" 2>&1 < /dev/null &
  local pubsub_pid=$!
  setsid java -Duser.language=en -cp "$FIRESTORE_JAR" com.google.cloud.datastore.emulator.firestore.CloudFirestore \
    start --host=127.0.0.1 --port="$firestore_port" >"$STATE_DIR/firestore.log" 2>&1 < /dev/null &
  local firestore_pid=$!
  cat >"$STATE_FILE" <<STATE
PUBSUB_EMULATOR_HOST=127.0.0.1:$pubsub_port
FIRESTORE_EMULATOR_HOST=127.0.0.1:$firestore_port
PUBSUB_PID=$pubsub_pid
FIRESTORE_PID=$firestore_pid
STATE
  wait_for Pub/Sub "127.0.0.1:$pubsub_port" "$pubsub_pid" "$STATE_DIR/pubsub.log"
  wait_for Firestore "127.0.0.1:$firestore_port" "$firestore_pid" "$STATE_DIR/firestore.log"
  echo "emulators up: pubsub 127.0.0.1:$pubsub_port, firestore 127.0.0.1:$firestore_port (state: $STATE_FILE)"
}

stop() {
  [ -f "$STATE_FILE" ] || { echo "emulators not running (no $STATE_FILE)"; return 0; }
  # shellcheck disable=SC1090
  . "$STATE_FILE"
  for pid in "$PUBSUB_PID" "$FIRESTORE_PID"; do
    # setsid made each java its own process group; kill the group so helper JVM children go too.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  done
  for _ in $(seq 1 40); do
    kill -0 "$PUBSUB_PID" 2>/dev/null || kill -0 "$FIRESTORE_PID" 2>/dev/null || break
    sleep 0.25
  done
  for pid in "$PUBSUB_PID" "$FIRESTORE_PID"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
  rm -f "$STATE_FILE"
  echo "emulators stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) if alive; then echo "running: pubsub $PUBSUB_EMULATOR_HOST, firestore $FIRESTORE_EMULATOR_HOST"; else echo "not running"; exit 1; fi ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
