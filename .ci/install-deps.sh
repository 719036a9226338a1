#!/usr/bin/env bash
# Install the Debian packages the test suite drives for real, and make sure PostgreSQL is up on
# 127.0.0.1:5432. Idempotent: when every binary is present and PostgreSQL answers, it is a fast no-op.
# Called by .ci/run and by the Makefile; needs root (apt-get, pg_ctlcluster).
set -euo pipefail

# binary:Debian package
NEEDED=(
  docker-registry:docker-registry
  skopeo:skopeo
  promtool:prometheus
  tcpreplay:tcpreplay
  ip:iproute2
  tc:iproute2
  tshark:tshark
  nfacctd:pmacct
  psql:postgresql-client
  pg_isready:postgresql-client
  unshare:util-linux
  iptables:iptables
  sysctl:procps
  systemd-analyze:systemd
  openssl:openssl
  logrotate:logrotate
  gcc:gcc
)
# headers the verify accelerator (sentinel/_ledgerscan.c, built by hatch_build.py) compiles with
HEADERS=(
  /usr/include/sqlite3.h:libsqlite3-dev
  /usr/include/openssl/evp.h:libssl-dev
)

missing=()
for entry in "${NEEDED[@]}"; do
  bin=${entry%%:*}
  pkg=${entry#*:}
  if ! command -v "$bin" >/dev/null 2>&1; then
    case " ${missing[*]-} " in *" $pkg "*) ;; *) missing+=("$pkg") ;; esac
  fi
done
for entry in "${HEADERS[@]}"; do
  [[ -f ${entry%%:*} ]] || missing+=("${entry#*:}")
done
# Python.h: pyenv and python.org builds ship it; Debian's own python3 needs python3-dev
if ! python3 -c 'import os, sysconfig, sys; sys.exit(not os.path.isfile(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
  missing+=(python3-dev)
fi
# The PostgreSQL server itself (the machine normally has it; a bare one gets Debian's).
if ! ls /etc/postgresql/*/main >/dev/null 2>&1 && ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  missing+=(postgresql)
fi

if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  for entry in "${NEEDED[@]}"; do
    command -v "${entry%%:*}" >/dev/null 2>&1 || {
      echo "install-deps: ${entry%%:*} still missing after installing ${entry#*:}" >&2
      exit 1
    }
  done
  for entry in "${HEADERS[@]}"; do
    [[ -f ${entry%%:*} ]] || {
      echo "install-deps: ${entry%%:*} still missing after installing ${entry#*:}" >&2
      exit 1
    }
  done
fi

if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  version=$(ls /etc/postgresql | sort -V | tail -n1)
  echo "install-deps: starting PostgreSQL $version" >&2
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
  for _ in $(seq 1 60); do
    pg_isready -q -h 127.0.0.1 -p 5432 && break
    sleep 0.5
  done
  if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    echo "install-deps: PostgreSQL did not come up on 127.0.0.1:5432" >&2
    exit 1
  fi
fi
echo "install-deps: ok (${NEEDED[*]%%:*}; ${HEADERS[*]%%:*}; PostgreSQL up)"
