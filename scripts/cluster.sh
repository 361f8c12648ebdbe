#!/usr/bin/env bash
# Several replicas sharing one Redis, offline: a real redis-server (appendonly, fsync on every write), three
# tiergate replicas on loopback ports with the seed's config plus `redis_url`, and nginx in front of them
# (round robin). The seed scenario runs through the load balancer; then each replica, asked directly, shows
# it knows the keys minted through any other, a block made on one replica refuses on the others, and
# rpm_limit holds across all three. Everything started here is stopped by PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

install_if_missing() { # <command> <debian package>
  command -v "$1" >/dev/null && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2") >/dev/null 2>&1 || true
  fi
  command -v "$1" >/dev/null || { echo "cluster.sh needs $1 (apt-get install $2)" >&2; exit 1; }
}
install_if_missing curl curl
install_if_missing nginx nginx-light
cargo build --quiet --bins --features fake-upstreams
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

redis_port=$(free_port)
pids+=("$(bash scripts/run-redis.sh "$work/redis" "$redis_port")")

start free_url free-upstream "$bin/fake-openai" --name free-endpoint
start paid_url paid-upstream "$bin/fake-openai" --name api-openai-com
sed "s|https://exampleopenaiendpoint-production.up.railway.app/|$free_url/|" config.yaml >"$work/config.yaml"
printf '  redis_url: redis://127.0.0.1:%s\n' "$redis_port" >>"$work/config.yaml"
export OPENAI_API_BASE="$paid_url/v1" OPENAI_API_KEY=demo-paid-upstream-key LITELLM_MASTER_KEY=sk-1234
replicas=()
for n in 1 2 3; do
  start "replica_$n" "replica-$n" "$bin/tiergate" --config "$work/config.yaml" --data-dir "$work/data-$n" \
    --host 127.0.0.1 --port 0 --workers 2
  name="replica_$n"
  replicas+=("${!name}")
done

lb_port=$(free_port)
{
  echo "pid $work/nginx.pid; error_log $work/nginx-error.log warn; events { worker_connections 1024; }"
  echo "http { access_log off; upstream replicas {"
  for replica in "${replicas[@]}"; do echo "  server ${replica#http://};"; done
  echo "} server { listen 127.0.0.1:$lb_port;"
  echo "  location / { proxy_pass http://replicas; proxy_http_version 1.1; proxy_buffering off;"
  echo "    add_header x-served-by \$upstream_addr always; } } }"
} >"$work/nginx.conf"
nginx -c "$work/nginx.conf" -p "$work" -g 'daemon off;' >"$work/nginx.log" 2>&1 &
pids+=("$!")
gateway="http://127.0.0.1:$lb_port"
for _ in $(seq 100); do curl -s -o /dev/null "$gateway/health/liveliness" && break; sleep 0.1; done
echo "load balancer: $gateway   replicas: ${replicas[*]}   redis: 127.0.0.1:$redis_port"

echo; echo "## The seed scenario, through the load balancer"
mint free
free_key=$key
chat_expecting "$free_key" "$free_url/"
mint paid
chat_expecting "$key" "$paid_url/v1"

# Asks one replica directly; fails unless it answers $3 for key $2 within a second.
expect_on() { # <replica url> <key> <status>
  local status
  for _ in $(seq 20); do
    status=$(curl -s -o /dev/null -w '%{http_code}' "$1/v1/chat/completions" -H "Authorization: Bearer $2" \
      -H 'Content-Type: application/json' -d '{"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}')
    [ "$status" = "$3" ] && { echo "  $1 -> $status"; return; }
    sleep 0.05
  done
  echo "expected $3 from $1, got $status" >&2; exit 1
}

echo; echo "## Every replica knows the key minted through the load balancer"
for replica in "${replicas[@]}"; do expect_on "$replica" "$free_key" 200; done

echo; echo "## A block on replica 1 refuses on replicas 2 and 3"
curl -sS -o /dev/null "${replicas[0]}/key/block" -H 'Authorization: Bearer sk-1234' -d "{\"key\": \"$free_key\"}"
for replica in "${replicas[@]:1}"; do expect_on "$replica" "$free_key" 401; done

echo; echo "## rpm_limit: 30 holds across the replicas: 90 requests through the load balancer"
answer=$(curl -sS "$gateway/key/generate" -H 'Authorization: Bearer sk-1234' -d '{"metadata": {"tier": "free"}, "rpm_limit": 30}')
limited=$(echo "$answer" | grep -o '"key":"[^"]*"' | cut -d'"' -f4)
# Every replica knows the key before the burst (asked with /key/info, which counts no request).
for replica in "${replicas[@]}"; do
  for _ in $(seq 20); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$replica/key/info?key=$limited" -H 'Authorization: Bearer sk-1234')" = 200 ] && break
    sleep 0.05
  done
done
passed=$(for _ in $(seq 90); do
  curl -s -o /dev/null -w '%{http_code}\n' "$gateway/v1/chat/completions" -H "Authorization: Bearer $limited" \
    -H 'Content-Type: application/json' -d '{"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}' &
done | grep -c '^200$' || true)
wait_for_children() { for job in $(jobs -p); do [[ " ${pids[*]} " == *" $job "* ]] || wait "$job" 2>/dev/null || true; done; }
wait_for_children
echo "  $passed of 90 passed"
[ "$passed" -eq 30 ] || { echo "expected exactly 30 to pass" >&2; exit 1; }

echo; echo "cluster passed: three replicas, one Redis, one set of keys and limits"
