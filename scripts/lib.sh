# Shared helpers for scripts/run, scripts/test and the benchmarks.
# Installs only what is missing, so a second run is fast.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${COUCHREPD_BUILD_DIR:-$REPO_ROOT/build}"
TEST_SERVER_DIR="$REPO_ROOT/tests/server"

# Debian packages the build, the tests and the demo need.
APT_PACKAGES=(g++ meson ninja-build pkg-config cmake libcpp-httplib-dev libsimdjson-dev
              libyaml-cpp-dev libspdlog-dev libfmt-dev doctest-dev libssl-dev zlib1g-dev
              libbrotli-dev curl openssl chromium clang libclang-rt-14-dev libsystemd-dev
              systemd prometheus help2man libcurl4-openssl-dev)

log() { printf '\033[1m[couchrepd]\033[0m %s\n' "$*" >&2; }

# Whether process PID is alive (not a zombie). Reads /proc/PID/stat once: a
# process that exits meanwhile is simply not running (no test-then-read race).
running() {
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"
  [ -n "$stat" ] && [ "${stat:0:1}" != Z ]
}

# stop_pid PID SECONDS: SIGTERM, then SIGKILL after SECONDS; its exit status in STOP_RC
# (PID must be a child of this shell for the status).
STOP_RC=0
stop_pid() {
  local pid="$1" secs="$2" i
  STOP_RC=0
  [ -n "$pid" ] || return 0
  if running "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < secs * 10; i++)); do
      running "$pid" || break
      sleep 0.1
    done
    if running "$pid"; then
      log "pid $pid did not stop within ${secs}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || STOP_RC=$?
}

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

ensure_apt_packages() {
  local missing=()
  for p in "${APT_PACKAGES[@]}" "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  # Node.js may come from elsewhere than Debian (e.g. a newer build with its
  # own npm): only ask apt for it when the commands are missing.
  command -v node >/dev/null 2>&1 || missing+=(nodejs)
  command -v npm >/dev/null 2>&1 || missing+=(npm)
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    # A new machine's own apt run may hold the lock: wait for it (10 min).
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
      --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

ensure_test_server() {
  local stamp="$TEST_SERVER_DIR/node_modules/.couchrepd-lock"
  if [ -f "$stamp" ] && cmp -s "$stamp" "$TEST_SERVER_DIR/package-lock.json"; then
    return
  fi
  log "installing the test server's npm packages (npm ci --ignore-scripts)"
  (cd "$TEST_SERVER_DIR" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
  cp "$TEST_SERVER_DIR/package-lock.json" "$stamp"
}

build() {
  if [ ! -f "$BUILD_DIR/build.ninja" ]; then
    log "configuring $BUILD_DIR"
    meson setup "$BUILD_DIR" "$REPO_ROOT" --wrap-mode=nodownload --buildtype=debugoptimized >/dev/null
  fi
  log "building"
  ninja -C "$BUILD_DIR" >/dev/null || ninja -C "$BUILD_DIR"
}

# free_port: prints a free TCP port on 127.0.0.1
free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

# --- fuzzing and sanitizer builds (scripts/fuzz, scripts/test) ---

# build_fuzz_targets DIR: configures DIR with clang and -Dfuzzing=true when
# needed and builds every tests/fuzz/fuzz_*.cpp target (nothing else).
build_fuzz_targets() {
  local dir="$1"
  if [ ! -f "$dir/build.ninja" ]; then
    log "configuring $dir (clang, -Dfuzzing=true)"
    CC=clang CXX=clang++ meson setup "$dir" "$REPO_ROOT" --wrap-mode=nodownload \
      --buildtype=debugoptimized -Dfuzzing=true -Dunity=on >/dev/null
  fi
  local targets=() f
  for f in "$REPO_ROOT"/tests/fuzz/fuzz_*.cpp; do
    targets+=("tests/fuzz/$(basename "$f" .cpp)")
  done
  log "building the fuzz targets in $dir"
  ninja -C "$dir" "${targets[@]}" >/dev/null || ninja -C "$dir" "${targets[@]}"
}

# run_fuzz_targets DIR SECONDS ARTIFACTS: runs each fuzz target for SECONDS
# from a temporary copy of tests/fuzz/corpus/<target>; one line per target,
# then a doctest-like summary line (counted by scripts/test). Crash inputs go
# to ARTIFACTS/<target>-crash-*. Returns non-zero when any target failed.
run_fuzz_targets() {
  local dir="$1" seconds="$2" artifacts="$3"
  mkdir -p "$artifacts"
  local work passed=0 failed=0 f name bin out start rc summary
  work="$(mktemp -d /tmp/couchrepd-fuzz-XXXXXX)"
  for f in "$REPO_ROOT"/tests/fuzz/fuzz_*.cpp; do
    name="$(basename "$f" .cpp)"
    bin="$dir/tests/fuzz/$name"
    out="$artifacts/$name.log"
    mkdir -p "$work/$name"
    if [ -d "$REPO_ROOT/tests/fuzz/corpus/$name" ]; then
      cp "$REPO_ROOT/tests/fuzz/corpus/$name"/* "$work/$name"/ 2>/dev/null || true
    fi
    rm -f "$artifacts/$name"-crash-* "$artifacts/$name"-leak-* "$artifacts/$name"-timeout-* "$artifacts/$name"-oom-*
    start=$SECONDS
    set +e
    UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" ASAN_OPTIONS="halt_on_error=1" \
      "$bin" -max_total_time="$seconds" -timeout=25 -rss_limit_mb=2560 -max_len=65536 \
      -print_final_stats=1 -artifact_prefix="$artifacts/$name-" "$work/$name" >"$out" 2>&1
    rc=$?
    set -e
    summary="$(grep -E '^stat::number_of_executed_units' "$out" | awk '{print $2}' || true)"
    if [ "$rc" -eq 0 ]; then
      passed=$((passed + 1))
      printf 'fuzz %-22s ok     %ss, %s runs, corpus %s files\n' "$name" "$((SECONDS - start))" \
        "${summary:-?}" "$(ls "$work/$name" | wc -l)"
    else
      failed=$((failed + 1))
      local input reason
      input="$(ls -t "$artifacts/$name"-* 2>/dev/null | grep -v '\.log$' | head -1 || true)"
      reason="$(grep -a -m1 -E 'contract broken|ERROR: (AddressSanitizer|libFuzzer|LeakSanitizer)|runtime error:' "$out" | cut -c1-200 || true)"
      printf 'fuzz %-22s FAILED (exit %s) after %ss: %s\n      input: %s, log: %s\n' "$name" "$rc" \
        "$((SECONDS - start))" "${reason:-see log}" "${input:-none}" "$out"
    fi
  done
  rm -rf "$work"
  echo "[doctest] test cases: $((passed + failed)) | $passed passed | $failed failed | 0 skipped"
  [ "$failed" -eq 0 ]
}

# build_sanitized DIR SANITIZERS [TEST...]: a gcc build of couchrepd and the
# test binaries (default: tests/unit_tests tests/integration_tests) with
# -Db_sanitize=SANITIZERS (address,undefined or thread) at -O1. These builds
# (and the fuzz build) are always from scratch in CI: a unity build (four
# sources per compiler run) takes about a third less CPU (TSan build of
# couchrepd and the integration tests: 7.9 vs 12.1 CPU-minutes), so no two
# source files may define the same name in an anonymous namespace.
build_sanitized() {
  local dir="$1" sanitizers="$2"; shift 2
  [ "$#" -gt 0 ] || set -- tests/unit_tests tests/integration_tests
  local targets=(couchrepd "$@")
  if [ ! -f "$dir/build.ninja" ]; then
    log "configuring $dir (-Db_sanitize=$sanitizers)"
    meson setup "$dir" "$REPO_ROOT" --wrap-mode=nodownload --buildtype=debugoptimized \
      -Doptimization=1 -Db_sanitize="$sanitizers" -Dunity=on >/dev/null
  fi
  log "building $dir"
  ninja -C "$dir" "${targets[@]}" >/dev/null || ninja -C "$dir" "${targets[@]}"
}
