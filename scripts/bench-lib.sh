# Shared by the benchmark scripts (bench.sh, bench-instructions.sh, bench-levels-instructions.sh): installing a
# Debian package when its command is missing, and a free local port. Source it; it sets no traps.

# Installs <debian package> when <command> is missing (as root, with apt-get); succeeds if <command> is there.
install_if_missing() { # <command> <debian package>
  command -v "$1" >/dev/null && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing $2 ..." >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2") >/dev/null 2>&1 || true
  fi
  command -v "$1" >/dev/null
}

# A TCP port on 127.0.0.1 that nothing listens on right now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
