# Shared by the benchmark scripts (bench.sh, bench-instructions.sh, bench-floor-instructions.sh, bench-profile.sh,
# bench-levels-instructions.sh): installing a Debian package when its command is missing, a free local port, the
# glibc settings valgrind's instruction counts are taken with, a one-deployment gateway config, the chat wrk
# script, waiting for a server and a process's CPU time. Source it; it sets no traps.

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
# For valgrind's instruction counts, as `GLIBC_TUNABLES=$COUNTED_GLIBC_TUNABLES valgrind ...` (the counted
# process only): glibc copies and clears blocks over a few KiB with `rep movsb`/`rep stosb` on CPUs with ERMS,
# and valgrind counts such an instruction once per byte (actix-http clears a 3 KiB header index at each
# dispatcher poll: 3,072 "instructions" for what takes the CPU ~100 cycles; 18 % of tiergate's count per
# request). With these thresholds glibc takes its vector loops instead (32 bytes an instruction), so a count
# follows CPU time. (SHA-256 still counts its software path: valgrind's CPU has no SHA extensions.) Measured:
# the floor's count per request 52.7 k -> 37.7 k, tiergate's 85.6 k -> 70.3 k (bench/results/issue-22-floor.md).
COUNTED_GLIBC_TUNABLES=glibc.cpu.x86_rep_movsb_threshold=1073741824:glibc.cpu.x86_rep_stosb_threshold=1073741824

# A gateway config with one free `gpt-4` deployment (openai/fake) on <upstream url>, under <master key>;
# [extra] goes at the end of general_settings (", disable_spend_logs: true").
single_deployment_config() { # <file> <upstream url> <master key> [extra]
  cat >"$1" <<YAML
model_list:
  - model_name: gpt-4
    litellm_params: {model: openai/fake, api_key: k, api_base: "$2"}
    model_info: {tier: free}
general_settings: {master_key: $3${4:-}}
YAML
}

# A wrk script that posts one short chat completion for `gpt-4`, with <key> as bearer (none when empty).
chat_lua() { # <file> <key, or empty>
  cat >"$1" <<'LUA'
wrk.method = "POST"
wrk.body = '{"model":"gpt-4","messages":[{"role":"user","content":"Hello, Claude gm!"}]}'
wrk.headers["Content-Type"] = "application/json"
LUA
  [ -z "$2" ] || echo "wrk.headers[\"Authorization\"] = \"Bearer $2\"" >>"$1"
}

# Waits until <url> answers (within 60 s); fails otherwise.
wait_for() { # <url>
  for _ in $(seq 600); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "$1 did not answer within 60 s" >&2
  return 1
}

# The CPU time (user + system, in clock ticks) process <pid> has used so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
