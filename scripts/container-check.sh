#!/usr/bin/env bash
# The container image (debian/Containerfile) built and run on this machine: a Debian bookworm base made by
# debootstrap from Debian's packages (kept as a local image for the next run), the given .deb installed on it,
# then the seed scenario against the gateway in a container on fake upstreams. Run by package-check.sh with
# the .deb it built; needs root and apt-get (podman, runc and debootstrap are installed when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
deb=${1:?usage: scripts/container-check.sh target/debian/tiergate_<version>_<arch>.deb}
started=$SECONDS

missing=()
for tool in podman runc debootstrap; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") >/dev/null
fi
# runc, not podman's default crun, which refuses these machines' hybrid cgroup layout. Explicit limits: podman's
# defaults are above the hard limits a VM lets root set. Host networking: no bridge or slirp needed, and the
# container reaches the fake upstreams on 127.0.0.1.
podman=(podman --runtime runc)
nofile=$(ulimit -Hn)
{ [ "$nofile" = unlimited ] || [ "$nofile" -gt 65536 ]; } && nofile=65536
limits=(--ulimit "nofile=$nofile:$nofile" --ulimit nproc=4096:4096 --network host)
base=localhost/tiergate-debian-base:bookworm
image=localhost/tiergate:check
container=tiergate-container-check

# shellcheck source=scripts/lib.sh
source scripts/lib.sh
# The base image stays (debootstrap is the slow part); the container and the checked image go.
trap 'cleanup; "${podman[@]}" rm -f -i "$container" >/dev/null 2>&1; "${podman[@]}" rmi -f -i "$image" >/dev/null 2>&1 || true' EXIT
fail() { echo "container check failed: $*" >&2; exit 1; }
"${podman[@]}" rm -f -i "$container" >/dev/null 2>&1 || true

if ! "${podman[@]}" image exists "$base"; then
  mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
  echo "making $base with debootstrap from $mirror (once per machine)"
  debootstrap --variant=minbase --include=adduser bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    fail "debootstrap: $(tail -5 "$work/debootstrap.log")"
  tar -C "$work/rootfs" -c . | "${podman[@]}" import - "$base" >/dev/null 2>&1
  rm -rf "$work/rootfs"
fi
mkdir "$work/context"
cp debian/Containerfile "$work/context/"
cp "$deb" "$work/context/tiergate.deb"
"${podman[@]}" build -q "${limits[@]}" --build-arg "BASE=$base" -t "$image" "$work/context" >/dev/null
echo "built $image in $((SECONDS - started)) s"

run() { "${podman[@]}" run --rm "${limits[@]}" "$@"; }
[ "$(run --entrypoint id "$image" -un)" = tiergate ] || fail "the image does not run as tiergate"
run --entrypoint test "$image" ! -e /etc/tiergate/env || fail "the image holds the package's env file (a master key)"
if run "$image" check --config /etc/tiergate/config.yaml >/dev/null; then fail "the image starts without a master key"; fi

start free_url free-upstream "$bin/fake-openai" --name free-endpoint
start paid_url paid-upstream "$bin/fake-openai" --name api-openai-com
sed "s|https://exampleopenaiendpoint-production.up.railway.app/|$free_url/|" debian/config.yaml >"$work/config.yaml"
chmod 644 "$work/config.yaml"
chmod 711 "$work"
master="sk-container-$RANDOM$RANDOM$RANDOM"
start gateway gateway "${podman[@]}" run --rm --name "$container" "${limits[@]}" \
  -e LITELLM_MASTER_KEY="$master" -e OPENAI_API_KEY=container-upstream-key -e OPENAI_API_BASE="$paid_url/v1" \
  -v "$work/config.yaml:/etc/tiergate/config.yaml:ro" \
  "$image" --config /etc/tiergate/config.yaml --data-dir /var/lib/tiergate --host 127.0.0.1 --port 0

mint() {
  key=$(curl -sS "$gateway/key/generate" -H "Authorization: Bearer $master" -H 'Content-Type: application/json' \
    -d "{\"metadata\": {\"tier\": \"$1\"}}" | grep -o '"key":"[^"]*"' | cut -d'"' -f4)
  [ -n "$key" ] || fail "minting a $1 key"
}
mint free
chat_expecting "$key" "$free_url/"
mint paid
chat_expecting "$key" "$paid_url/v1"
"${podman[@]}" stop -t 10 "$container" >/dev/null
echo "container check passed in $((SECONDS - started)) s"
