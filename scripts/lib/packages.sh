# Debian packages the scripts install when missing: each is named with the reason it is needed
# before anything is installed, and nothing they merely recommend comes along. Sourced, not run.
#   want_package PACKAGE "why"   queue a missing package
#   install_wanted_packages      install the queue (apt-get, as root or through sudo)

WANTED_PACKAGES=()

want_package() {
  WANTED_PACKAGES+=("$1")
  log "needs $1: $2"
}

install_wanted_packages() {
  [ "${#WANTED_PACKAGES[@]}" -gt 0 ] || return 0
  command -v apt-get >/dev/null 2>&1 ||
    die "install ${WANTED_PACKAGES[*]} first (no apt-get here to do it)"
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "install ${WANTED_PACKAGES[*]} first (needs root or sudo)"
    sudo="sudo"
  fi
  log "installing ${WANTED_PACKAGES[*]} with apt-get (--no-install-recommends)"
  local output
  output="$(mktemp)"
  if ! { $sudo apt-get update -qq &&
         DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
           "${WANTED_PACKAGES[@]}"; } >"$output" 2>&1; then
    tail -n 20 "$output" >&2
    rm -f "$output"
    die "apt-get could not install ${WANTED_PACKAGES[*]}"
  fi
  rm -f "$output"
  WANTED_PACKAGES=()
}

# The Python tools the checks run, each pinned, in .data/venv (about 160 MB, removed with
# .data): openapi-spec-validator, schemathesis and openapi-python-client (the reference
# check), squawk-cli (the migration linter), opentelemetry-proto (the tests' OTLP receiver).
# Sets VENV.
PYTHON_TOOLS=(openapi-spec-validator==0.9.0 schemathesis==4.32.5 squawk-cli==2.70.0
  openapi-python-client==0.29.1 opentelemetry-proto==1.45.2)
ensure_python_tools() {
  VENV="$ROOT/.data/venv"
  local tool missing=()
  for tool in "${PYTHON_TOOLS[@]}"; do
    [ "$("$VENV/bin/pip" show "${tool%%==*}" 2>/dev/null | sed -n 's/^Version: //p')" = "${tool##*==}" ] ||
      missing+=("$tool")
  done
  [ "${#missing[@]}" -gt 0 ] || return 0
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
    want_package python3-venv "Python's venv, to install ${missing[*]} apart from the system"
    install_wanted_packages
  fi
  log "needs ${missing[*]} from PyPI: installing into .data/venv"
  [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${missing[@]}"
}
