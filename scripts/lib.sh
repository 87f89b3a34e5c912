# Shared helpers for scripts/run, scripts/test and the benchmarks.
# Installs only what is missing, so a second run is fast.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${COUCHREPD_BUILD_DIR:-$REPO_ROOT/build}"
TEST_SERVER_DIR="$REPO_ROOT/tests/server"

# Debian packages the build, the tests and the demo need.
APT_PACKAGES=(g++ meson ninja-build pkg-config cmake libcpp-httplib-dev libsimdjson-dev
              libyaml-cpp-dev libspdlog-dev libfmt-dev doctest-dev libssl-dev zlib1g-dev
              libbrotli-dev curl openssl chromium)

log() { printf '\033[1m[couchrepd]\033[0m %s\n' "$*" >&2; }

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
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
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
