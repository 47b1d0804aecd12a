#!/usr/bin/env bash
# Runs Herald on this machine: makes sure the local RabbitMQ and Redis are
# up, builds `herald`, starts the mock vendor (every vendor's API) and a
# worker, sends one demo job through each provider, shows what the vendors
# received, and keeps the worker running until Ctrl-C.
#
#   deploy/local.sh          set up and run the demo
#   deploy/local.sh --down   remove what it set up: the topology (queues and
#                            exchanges, with their messages) and its Redis keys
#
# LOCAL_HERALD_BIN names a `herald` binary to use instead of building one.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
config=deploy/local.toml
mock=127.0.0.1:9900

herald_binary() {
  if [ -n "${LOCAL_HERALD_BIN:-}" ]; then
    echo "$LOCAL_HERALD_BIN"
  else
    cargo build --release --bin herald >&2
    echo "$CARGO_TARGET_DIR/release/herald"
  fi
}

if [ "${1:-}" = "--down" ]; then
  herald=$(herald_binary)
  "$herald" --config "$config" topology delete --yes
  # The keys live under the configured prefix (HERALD_REDIS_PREFIX overrides it).
  prefix="${HERALD_REDIS_PREFIX:-herald:}"
  redis_url="${HERALD_REDIS_URL:-redis://127.0.0.1:6379/0}"
  redis-cli -u "$redis_url" --scan --pattern "${prefix}*" | while read -r key; do
    redis-cli -u "$redis_url" unlink "$key" >/dev/null
  done
  echo "removed the Redis keys under ${prefix}"
  exit 0
elif [ -n "${1:-}" ]; then
  echo "usage: deploy/local.sh [--down]" >&2
  exit 2
fi

# Demo credentials for the mock vendor (never real ones).
export PAYHERO_BASIC_TOKEN=demo-token PINGUP_API_KEY=demo-key KALEYRA_API_KEY=demo-key
export DIGITAL99_API_KEY=demo-key REPLYHERO_API_KEY=demo-key META_ACCESS_TOKEN=demo-token

if ! redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
fi
if ! rabbitmq-diagnostics -q check_port_connectivity >/dev/null 2>&1; then
  rabbitmq-server -detached
  until rabbitmq-diagnostics -q check_port_connectivity >/dev/null 2>&1; do sleep 1; done
fi

herald=$(herald_binary)

# The servers run in sessions of their own, so Ctrl-C reaches them once,
# from the cleanup below: the worker then finishes its in-flight jobs.
pids=()
cleanup() { kill -TERM "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM

setsid "$herald" mock-vendor --listen "$mock" & pids+=($!)
"$herald" --config "$config" topology declare
setsid "$herald" --config "$config" worker & pids+=($!)

# Session messages need an open window: the demo customer "wrote" just now.
for provider in pingup kaleyra 99digital replyhero meta; do
  "$herald" --config "$config" inbound record --provider "$provider" --contact +254712345678
done
run=$(date +%s)
for provider in payhero pingup kaleyra 99digital meta; do
  "$herald" --config "$config" enqueue --id "demo-$run-$provider" --provider "$provider" \
    --to +254712345678 --text "Hello from Herald via $provider"
done
"$herald" --config "$config" enqueue --id "demo-$run-replyhero" --provider replyhero \
  --to +254712345678 --text "Hello from Herald via replyhero" --option customer_id=CUSTOMER_ID

for _ in $(seq 1 30); do
  sent=$(curl -sf "http://$mock/_mock/requests" | grep -o '"provider"' | wc -l || true)
  [ "$sent" -ge 6 ] && break
  sleep 1
done
echo; echo "What the vendors received (GET http://$mock/_mock/stats):"
curl -sf "http://$mock/_mock/stats"; echo
"$herald" --config "$config" topology status
echo; echo "Worker metrics: http://127.0.0.1:9090/metrics — Ctrl-C to stop."
wait
