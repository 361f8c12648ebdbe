#!/usr/bin/env bash
# Installs redis-server (Debian package) when it is missing and this runs as root with apt-get; one install at
# a time (test binaries run in parallel). Used by .ci/run, scripts/cluster.sh and the Redis tests.
set -euo pipefail
command -v redis-server >/dev/null && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  exec 9>/tmp/tiergate-install-redis.lock
  flock 9
  command -v redis-server >/dev/null && exit 0
  echo "installing redis-server ..." >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) >/dev/null 2>&1 || true
  # Debian's package starts a system-wide server on 6379; the tests and scripts run their own.
  (service redis-server stop || systemctl stop redis-server) >/dev/null 2>&1 || true
fi
command -v redis-server >/dev/null || { echo "redis-server is needed: apt-get install redis-server" >&2; exit 1; }
