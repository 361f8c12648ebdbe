#!/usr/bin/env bash
# The Debian package, end to end on this machine (root, apt-get; systemd need not be running): builds the .deb
# with cargo-deb, installs it with dpkg, checks the files, the user and the env file, verifies the unit with
# systemd-analyze, starts the INSTALLED binary as the unit would (its user, env file, working dir and command
# lines, read from the installed unit), walks the seed scenario against fake upstreams, reloads with SIGHUP,
# then removes the package (the keys stay) and purges it (everything goes), and last runs container-check.sh on
# the same .deb. It installs and purges the
# `tiergate` package system-wide: a tiergate package already installed here is purged first.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS

[ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || { echo "package-check.sh needs root and apt-get" >&2; exit 1; }
missing=()
for tool in curl:curl systemd-analyze:systemd adduser:adduser setpriv:util-linux dpkg-shlibdeps:dpkg-dev; do
  command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") >/dev/null
fi
# Pinned: the package's layout is what this version makes of [package.metadata.deb].
cargo_deb_version=3.8.0
if ! cargo deb --version 2>/dev/null | grep -qF "$cargo_deb_version"; then
  cargo install --quiet --locked cargo-deb --version "$cargo_deb_version"
fi

unit=/usr/lib/systemd/system/tiergate.service
gateway_pid=
purge_package() {
  if dpkg-query -W -f='${Status}' tiergate 2>/dev/null | grep -q 'installed\|config-files'; then
    DEBIAN_FRONTEND=noninteractive dpkg --purge tiergate >/dev/null
  fi
}
# A run that failed half-way left the package (maybe a gateway of it) behind: the check starts from none.
if pgrep -x tiergate -u tiergate >/dev/null 2>&1; then
  echo "a tiergate of the installed package is running (pid $(pgrep -x tiergate -u tiergate)); stop it first" >&2
  exit 1
fi
purge_package

cargo build --quiet --bins --features fake-upstreams   # the fake upstreams (target/debug)
cargo deb --quiet --locked
deb=$(ls -t target/debian/tiergate_*.deb | head -1)
echo "built $deb in $((SECONDS - started)) s"

# `cargo install --path .` installs the gateway and nothing else: the fake upstreams are bins behind the
# fake-upstreams feature (Cargo.toml). It reuses the release build cargo deb just made (same target dir).
install_root=$(mktemp -d)
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target} cargo install --quiet --locked --path . --root "$install_root" 2>/dev/null
installed=$(ls "$install_root/bin")
rm -rf "$install_root"
[ "$installed" = tiergate ] || { echo "package check failed: cargo install installs $(echo $installed), not tiergate only" >&2; exit 1; }

# shellcheck source=scripts/lib.sh
source scripts/lib.sh
# lib.sh stops what it started; the package goes too, so no gateway, user or key outlives a failed run.
trap 'cleanup; purge_package' EXIT
fail() { echo "package check failed: $*" >&2; exit 1; }

echo "## install"
dpkg -i --force-confdef --force-confold "$deb" >/dev/null
[ -x /usr/bin/tiergate ] || fail "/usr/bin/tiergate is not installed"
expected_version="tiergate $(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1) (commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown))"
[ "$(/usr/bin/tiergate --version)" = "$expected_version" ] || fail "--version says $(/usr/bin/tiergate --version), not $expected_version"
dpkg-query -W -f='${Conffiles}' tiergate | grep -q '^ /etc/tiergate/config.yaml ' || fail "config.yaml is no conffile"
[ -f "$unit" ] || fail "$unit is not installed"
getent passwd tiergate | grep -q ':/var/lib/tiergate:/usr/sbin/nologin$' || fail "no tiergate system user: $(getent passwd tiergate)"
[ "$(id -u tiergate)" -lt 1000 ] || fail "tiergate is not a system user"
[ "$(stat -c '%a %U:%G' /etc/tiergate/env)" = "600 root:root" ] || fail "/etc/tiergate/env is $(stat -c '%a %U:%G' /etc/tiergate/env)"
[ "$(stat -c '%a %U' /var/lib/tiergate)" = "700 tiergate" ] || fail "/var/lib/tiergate is $(stat -c '%a %U' /var/lib/tiergate)"
master=$(sed -n 's/^LITELLM_MASTER_KEY=//p' /etc/tiergate/env)
[[ $master =~ ^sk-[0-9a-f]{64}$ ]] || fail "the master key in /etc/tiergate/env is not 32 random bytes"
dpkg -i --force-confdef --force-confold "$deb" >/dev/null   # an upgrade (here a reinstall) keeps the key in use
[ "$(sed -n 's/^LITELLM_MASTER_KEY=//p' /etc/tiergate/env)" = "$master" ] || fail "a reinstall rewrote the master key"
echo "installed: /usr/bin/tiergate, $unit, /etc/tiergate/{config.yaml,env (0600, random key)}, user tiergate"

echo "## systemd-analyze verify"
# Exit status and output both: verify prints problems it does not fail on (an unknown key, a bad path).
verify=$(systemd-analyze verify "$unit" 2>&1) || fail "systemd-analyze verify: $verify"
if echo "$verify" | grep -q tiergate; then fail "systemd-analyze verify: $verify"; fi
for line in User=tiergate EnvironmentFile=/etc/tiergate/env StateDirectory=tiergate WorkingDirectory=/var/lib/tiergate \
  'ExecReload=/bin/kill -HUP $MAINPID' Restart=on-failure NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes \
  PrivateTmp=yes ReadWritePaths=/var/lib/tiergate LimitNOFILE=65536; do
  grep -qxF "$line" "$unit" || fail "the unit lacks $line"
done

# The unit's service as systemd would run it without systemd: the env file's variables only (and PATH), its
# user and group with no new privileges, its working dir and file limit, its own command lines. Call it in a
# subshell or in the background: it ends in exec.
as_unit() {
  local vars=() line
  while IFS= read -r line; do
    case $line in '' | '#'*) ;; *) vars+=("$line") ;; esac
  done </etc/tiergate/env
  cd /var/lib/tiergate
  # LimitNOFILE=65536; a container may cap the hard limit below it, then its cap is as near as root gets.
  ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
  exec env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "${vars[@]}" \
    setpriv --reuid=tiergate --regid=tiergate --init-groups --no-new-privs -- "$@"
}
unit_command() { sed -n "s/^$1=//p" "$unit"; }
read -ra exec_start_pre <<<"$(unit_command ExecStartPre)"
read -ra exec_start <<<"$(unit_command ExecStart)"

echo "## the seed scenario on the installed gateway"
if (exec 3<>/dev/tcp/127.0.0.1/4000) 2>/dev/null; then fail "port 4000, the unit's, is taken on this machine"; fi
start free_url free-upstream "$bin/fake-openai" --name free-endpoint
start paid_url paid-upstream "$bin/fake-openai" --name api-openai-com
# What an operator does after installing: point the free deployment at its endpoint and give the paid one its
# upstream key (and here a local base standing in for api.openai.com) in the env file.
sed -i "s|https://exampleopenaiendpoint-production.up.railway.app/|$free_url/|" /etc/tiergate/config.yaml
printf 'OPENAI_API_KEY=package-check-upstream-key\nOPENAI_API_BASE=%s/v1\n' "$paid_url" >>/etc/tiergate/env
(as_unit "${exec_start_pre[@]}") >"$work/check.log" || fail "ExecStartPre refused the config: $(cat "$work/check.log")"
start gateway gateway as_unit "${exec_start[@]}"
gateway_pid=${pids[-1]}
[ "$(ps -o user= -p "$gateway_pid")" = tiergate ] || fail "the gateway runs as $(ps -o user= -p "$gateway_pid")"
[ "$(readlink "/proc/$gateway_pid/exe")" = /usr/bin/tiergate ] || fail "the gateway is not the installed binary"

mint() {
  local answer
  answer=$(curl -sS "$gateway/key/generate" -H "Authorization: Bearer $master" -H 'Content-Type: application/json' \
    -d "{\"metadata\": {\"tier\": \"$1\"}, \"key_alias\": \"package-check-$1\"}")
  key=$(echo "$answer" | grep -o '"key":"[^"]*"' | cut -d'"' -f4)
  [ -n "$key" ] || fail "minting a $1 key: $(redacted_answer "$answer")"
  echo "minted a $1 key"
}
redacted_answer() { echo "$1" | sed 's/sk-[A-Za-z0-9_-]*/sk-…/g'; }
mint free
free_key=$key
chat_expecting "$free_key" "$free_url/"
mint paid
chat_expecting "$key" "$paid_url/v1"

echo "## reload with SIGHUP (the unit's ExecReload)"
models() { curl -sS "$gateway/v1/models" -H "Authorization: Bearer $free_key"; }
models | grep -q '"gpt-4o-mini"' && fail "gpt-4o-mini is served before it is configured"
# A second free model, inserted as the first entry of model_list.
sed -i "/^model_list:/a\\
  - model_name: gpt-4o-mini\\
    litellm_params: {model: openai/gpt-4o-mini, api_key: fake-key, api_base: \"$free_url/\"}\\
    model_info: {tier: free}" /etc/tiergate/config.yaml
(as_unit /usr/bin/tiergate check --config /etc/tiergate/config.yaml) >"$work/check.log" ||
  fail "the edited config does not check: $(cat "$work/check.log")"
reload=$(unit_command ExecReload)
${reload//\$MAINPID/$gateway_pid}
for _ in $(seq 50); do models | grep -q '"gpt-4o-mini"' && break; sleep 0.1; done
models | grep -q '"gpt-4o-mini"' || fail "gpt-4o-mini is not served after SIGHUP: $(tail -3 "$work/gateway.log")"
grep -q 'config reloaded' "$work/gateway.log" || fail "the gateway did not log the reload"
echo "gpt-4o-mini is served after SIGHUP"

echo "## stop, remove (keys stay), reinstall (they are back), purge (all gone)"
kill -TERM "$gateway_pid"
wait "$gateway_pid" || fail "the gateway exited with status $? on SIGTERM"
grep -qF "$master" "$work/gateway.log" "$work/check.log" && fail "a log shows the master key"
DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq tiergate >/dev/null
[ ! -e /usr/bin/tiergate ] || fail "remove left /usr/bin/tiergate"
[ -d /var/lib/tiergate ] && [ -n "$(ls -A /var/lib/tiergate)" ] || fail "remove deleted the key store"
[ "$(sed -n 's/^LITELLM_MASTER_KEY=//p' /etc/tiergate/env)" = "$master" ] || fail "remove lost /etc/tiergate/env"
getent passwd tiergate >/dev/null || fail "remove deleted the user"
dpkg -i --force-confdef --force-confold "$deb" >/dev/null
start gateway gateway as_unit "${exec_start[@]}"
gateway_pid=${pids[-1]}
chat_expecting "$free_key" "$free_url/"   # the key minted before the remove still works
kill -TERM "$gateway_pid"
wait "$gateway_pid" || fail "the gateway exited with status $? on SIGTERM"
DEBIAN_FRONTEND=noninteractive dpkg --purge tiergate >/dev/null
for path in /usr/bin/tiergate /var/lib/tiergate /etc/tiergate "$unit"; do
  [ ! -e "$path" ] || fail "purge left $path"
done
getent passwd tiergate >/dev/null && fail "purge left the tiergate user"
getent group tiergate >/dev/null && fail "purge left the tiergate group"
echo "package check passed in $((SECONDS - started)) s"
# The container image is the same .deb on a Debian base: checked here, where the .deb was just built.
bash scripts/container-check.sh "$deb"
