#!/usr/bin/env bash
# Installs what sameday's tests need outside of cargo. Idempotent and fast when
# everything is present (it runs at the start of every test run).
#
#   MariaDB binaries (mariadbd, mariadb-install-db, mariadb, mariadb-binlog) via apt
#   node + npm via apt (only if missing)
#   $SAMEDAY_CACHE/npm   : kinesalite, fauxqs, asl-validator  (crates/testkit/emulators/package*.json)
#   $SAMEDAY_CACHE/venv  : moto[server], cfn-lint, boto3      (scripts/requirements-emulators.txt)
#
# SAMEDAY_CACHE defaults to <repo>/.cache. Nothing is installed globally by npm/pip,
# and the system MariaDB service is never started or touched.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${SAMEDAY_CACHE:-$REPO/.cache}"
EMU_DIR="$REPO/crates/testkit/emulators"
REQS="$REPO/scripts/requirements-emulators.txt"
CONSTRAINTS="$REPO/scripts/constraints-emulators.txt"

say() { printf 'prereqs: %s\n' "$*"; }
die() { printf 'prereqs: ERROR: %s\n' "$*" >&2; exit 1; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || die "not root and sudo is not available"
  SUDO=(sudo)
fi

APT_UPDATED=0
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  if [ "$APT_UPDATED" -eq 0 ]; then
    "${SUDO[@]}" apt-get update -qq >/dev/null
    APT_UPDATED=1
  fi
  "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# An executable regular file named $1 in $PATH or the sbin dirs (mariadbd lives in
# /usr/sbin, often not on a user's PATH). Not `command -v`: bash's falls back to a
# non-executable match.
have() {
  local d IFS=:
  for d in $PATH /usr/local/sbin /usr/sbin /sbin; do
    [ -n "$d" ] && [ -f "$d/$1" ] && [ -x "$d/$1" ] && return 0
  done
  return 1
}

# File content digest used for stamps (sha256sum is in coreutils).
digest() { cat "$@" | sha256sum | cut -c1-16; }

# ---------------------------------------------------------------- MariaDB
missing=()
for b in mariadbd mariadb-install-db mariadb mariadb-binlog; do have "$b" || missing+=("$b"); done
if [ "${#missing[@]}" -eq 0 ]; then
  say "mariadb: ok"
else
  say "mariadb: missing ${missing[*]}, installing via apt"
  # mariadb-server-core has mariadbd + mariadb-install-db + system tables, mariadb-client
  # has mariadb + mariadb-binlog. Neither ships the init script/unit, so apt cannot
  # start a system MariaDB service (the `mariadb-server` metapackage would).
  apt_install mariadb-server-core mariadb-client
  for b in mariadbd mariadb-install-db mariadb mariadb-binlog; do
    have "$b" || die "mariadb: $b still missing after apt install"
  done
  say "mariadb: installed"
fi

# ---------------------------------------------------------------- node/npm
if have node && have npm; then
  say "node: ok ($(node --version))"
else
  say "node: missing, installing nodejs npm via apt"
  # Some nodejs builds (e.g. nodesource) ship npm and conflict with Debian's npm package.
  have node || apt_install nodejs
  have npm || apt_install npm
  say "node: installed ($(node --version))"
fi

# ---------------------------------------------------------------- npm packages
NPM_DIR="$CACHE/npm"
npm_stamp_want="$(digest "$EMU_DIR/package.json" "$EMU_DIR/package-lock.json")"
npm_ok=0
if [ -f "$NPM_DIR/.sameday-stamp" ] && [ "$(cat "$NPM_DIR/.sameday-stamp")" = "$npm_stamp_want" ]; then
  npm_ok=1
  for p in kinesalite fauxqs asl-validator; do
    [ -f "$NPM_DIR/node_modules/$p/package.json" ] || npm_ok=0
  done
fi
if [ "$npm_ok" -eq 1 ]; then
  say "npm emulators: ok ($NPM_DIR)"
else
  say "npm emulators: installing kinesalite fauxqs asl-validator into $NPM_DIR"
  node_major="$(node -p 'process.versions.node.split(".")[0]')"
  [ "$node_major" -ge 20 ] || say "npm emulators: WARNING node $node_major < 20, fauxqs needs >= 20"
  mkdir -p "$NPM_DIR"
  rm -f "$NPM_DIR/.sameday-stamp"
  cp "$EMU_DIR/package.json" "$EMU_DIR/package-lock.json" "$NPM_DIR/"
  # Lockfile-exact install; the optional leveldown (only used by kinesalite --path) is skipped.
  npm ci --prefix "$NPM_DIR" --omit=dev --omit=optional --no-audit --no-fund \
    --loglevel=error >"$NPM_DIR/npm-install.log" 2>&1 \
    || { cat "$NPM_DIR/npm-install.log" >&2; die "npm ci failed"; }
  printf '%s\n' "$npm_stamp_want" >"$NPM_DIR/.sameday-stamp"
  say "npm emulators: installed"
fi

# ---------------------------------------------------------------- python venv
VENV="$CACHE/venv"
PY="${SAMEDAY_PYTHON:-python3}"
command -v "$PY" >/dev/null 2>&1 || { say "python: missing, installing python3 via apt"; apt_install python3 python3-venv; }
py_ver="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
venv_stamp_want="py$py_ver-$(digest "$REQS" "$CONSTRAINTS")"
if [ -f "$VENV/.sameday-stamp" ] && [ "$(cat "$VENV/.sameday-stamp")" = "$venv_stamp_want" ] \
   && [ -x "$VENV/bin/moto_server" ] && [ -x "$VENV/bin/cfn-lint" ] && [ -x "$VENV/bin/python" ]; then
  say "python venv: ok ($VENV)"
else
  say "python venv: installing moto[server] cfn-lint boto3 into $VENV"
  if ! "$PY" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    apt_install python3-venv
  fi
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  pip_args=(install --quiet --disable-pip-version-check --no-input)
  if ! "$VENV/bin/python" -m pip "${pip_args[@]}" -r "$REQS" -c "$CONSTRAINTS" \
        >"$CACHE/pip-install.log" 2>&1; then
    # The full pin set is for Python 3.11; on another Python fall back to the top-level pins.
    say "python venv: WARNING constrained install failed (see $CACHE/pip-install.log), retrying with top-level pins only"
    "$VENV/bin/python" -m pip "${pip_args[@]}" -r "$REQS" >>"$CACHE/pip-install.log" 2>&1 \
      || { tail -30 "$CACHE/pip-install.log" >&2; die "pip install failed"; }
  fi
  "$VENV/bin/python" -c 'import boto3, moto, cfnlint, aws_kinesis_agg' || die "venv import check failed"
  printf '%s\n' "$venv_stamp_want" >"$VENV/.sameday-stamp"
  say "python venv: installed"
fi
