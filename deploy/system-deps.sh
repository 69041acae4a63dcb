#!/usr/bin/env bash
# Installs the Debian packages the integration tests need, only if they are missing:
#   prometheus (server + promtool), kcat, chromium (headless browser tests) plus a font for it,
#   Java 17+ and Maven (to fetch and run the local Kafka broker, see deploy/kafka/kafka.sh),
#   gcc and the Python headers (make native compiles the risk package; CI requires it).
# Idempotent: when everything is present it changes nothing and does not touch the network.
# Debian/Ubuntu only (apt-get); run as root, or as a user with sudo.
set -euo pipefail

say() { printf 'system-deps: %s\n' "$*"; }
die() { printf 'system-deps: ERROR: %s\n' "$*" >&2; exit 1; }

# Is a Debian package installed?
have_pkg() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

java_major() {
    command -v java >/dev/null 2>&1 || { echo 0; return; }
    local v
    v="$(java -XshowSettings:properties -version 2>&1 |
        sed -n 's/^ *java\.specification\.version = \([0-9.]*\).*/\1/p')"
    v="${v#1.}"
    v="${v%%.*}"
    echo "${v:-0}"
}

missing=()
need() { # need PACKAGE CHECK...: queue PACKAGE unless the check succeeds
    local pkg="$1"
    shift
    if "$@"; then
        return
    fi
    missing+=("$pkg")
}
cmds() { # cmds NAME...: all commands exist
    local c
    for c in "$@"; do
        command -v "$c" >/dev/null 2>&1 || return 1
    done
}
java17() { (($(java_major) >= 17)); }
python_headers() { # the headers of the python3 on PATH (pyenv's and the like bring their own)
    python3 -c 'import os, sysconfig, sys
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'
}

need prometheus cmds prometheus promtool
need kcat cmds kcat
need chromium cmds chromium
need fonts-liberation have_pkg fonts-liberation
need openjdk-17-jre-headless java17
need maven cmds mvn
need gcc cmds gcc
need python3-dev python_headers

if ((${#missing[@]} == 0)); then
    say "all present (prometheus, promtool, kcat, chromium, java $(java_major), mvn, gcc, Python headers)"
    exit 0
fi

say "missing: ${missing[*]}"
command -v apt-get >/dev/null 2>&1 ||
    die "apt-get not found; install these yourself: ${missing[*]}"

SUDO=()
if ((EUID != 0)); then
    command -v sudo >/dev/null 2>&1 ||
        die "not root and sudo is not available; as root run: apt-get install ${missing[*]}"
    SUDO=(sudo)
fi

# Package scripts must not start daemons (e.g. a prometheus service on :9090 that would clash
# with the test's own Prometheus, or a failing service start in a container without systemd).
# A policy-rc.d that says "no" (exit 101) is Debian's switch for that; we add one only for the
# duration of the install and only if there is none already.
POLICY=/usr/sbin/policy-rc.d
policy_added=""
cleanup() {
    if [[ -n "$policy_added" ]]; then
        "${SUDO[@]}" rm -f "$POLICY"
    fi
}
trap cleanup EXIT
if [[ ! -e "$POLICY" ]]; then
    printf '#!/bin/sh\n# temporary, from deploy/system-deps.sh: do not start services\nexit 101\n' |
        "${SUDO[@]}" tee "$POLICY" >/dev/null
    "${SUDO[@]}" chmod 755 "$POLICY"
    policy_added=1
fi

export DEBIAN_FRONTEND=noninteractive
say "apt-get update"
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
say "apt-get install ${missing[*]}"
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    "${missing[@]}"

# Verify what the tests actually call.
still=()
cmds prometheus promtool || still+=("prometheus/promtool")
cmds kcat || still+=("kcat")
cmds chromium || still+=("chromium")
cmds mvn || still+=("mvn")
if ! java17; then
    still+=("java 17+ (found $(java_major); check: update-alternatives --config java)")
fi
((${#still[@]} == 0)) || die "still missing after install: ${still[*]}"
say "done"
