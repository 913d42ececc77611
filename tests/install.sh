#!/usr/bin/env bash
# Installs what the test suite needs that this machine lacks: PostgreSQL's server binaries and
# psql, SoftHSM, and the drivers the end-to-end tests run through pgseal (a JDK and PgJDBC from Debian,
# node-postgres and postgres.js from npm, psycopg2, psycopg 3, asyncpg and SQLAlchemy from PyPI in a
# virtualenv). Installs nothing that is already there; safe to run again.
#
#   bash tests/install.sh && cargo test --workspace
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=no
apt_install() {
  if [ "$apt_updated" = no ]; then
    as_root apt-get update -qq
    apt_updated=yes
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

have_server_binaries() {
  command -v initdb >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}

# PostgreSQL server binaries for the test harness; as root the harness runs them as the
# `postgres` user, which the Debian package creates.
if ! have_server_binaries || { [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; }; then
  echo "installing PostgreSQL server binaries"
  apt_install postgresql
fi
command -v psql >/dev/null 2>&1 || apt_install postgresql-client
# The drivers the end-to-end tests run through pgseal (tests/tests/e2e/drivers.rs).
command -v javac >/dev/null 2>&1 || apt_install default-jdk-headless
[ -f /usr/share/java/postgresql.jar ] || apt_install libpostgresql-jdbc-java
# SoftHSM for the wrapped-keyring tests (keys/tests/hsm.rs, tests/tests/hsm.rs), which make
# their own tokens in temporary directories and fail without it.
command -v softhsm2-util >/dev/null 2>&1 || apt_install softhsm2
# node-postgres and postgres.js, pinned by package-lock.json, into tests/clients/node/node_modules
# (tests/tests/e2e/drivers_scripted.rs); `npm ls` fails when one is missing or of another version.
command -v npm >/dev/null 2>&1 || apt_install nodejs npm
(cd tests/clients/node && { npm ls --silent >/dev/null 2>&1 || npm ci --no-audit --no-fund --silent; })
# psycopg2, psycopg 3, asyncpg and SQLAlchemy, pinned by requirements.txt, in a virtualenv of their own;
# reinstalled when requirements.txt changes.
pyenv_dir=tests/clients/python/.venv
if ! cmp -s tests/clients/python/requirements.txt "$pyenv_dir/requirements.installed"; then
  python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv
  rm -rf "$pyenv_dir"
  python3 -m venv "$pyenv_dir"
  "$pyenv_dir/bin/pip" install -q --disable-pip-version-check -r tests/clients/python/requirements.txt
  cp tests/clients/python/requirements.txt "$pyenv_dir/requirements.installed"
fi
