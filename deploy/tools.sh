#!/usr/bin/env bash
# Installs the tools of the offline deployment checks, only if they are missing, into a cache
# (LIFECYCLE_TOOLS, default ~/.cache/lifecycle-tools) that survives `make clean`:
#   helm      built from source with `go install` (Go module proxy; ~3 min and ~1 GB once)
#   asyncapi  the AsyncAPI CLI (@asyncapi/cli from npm), which validates docs/asyncapi.json
#   webhooks  GitHub's published webhook payloads (@octokit/webhooks-examples from npm, MIT),
#             which the connector tests map (tests/unit/connectors/payloads.py)
#
#   bash deploy/tools.sh          install what is missing, then print the tools' paths
#   bash deploy/tools.sh helm     print helm's path (installing it if missing)
#   bash deploy/tools.sh asyncapi print the AsyncAPI CLI's path (installing it if missing)
#   bash deploy/tools.sh webhooks print the payload examples' index.json (installing them if missing)
set -euo pipefail

TOOLS="${LIFECYCLE_TOOLS:-${HOME:-/tmp}/.cache/lifecycle-tools}"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
ASYNCAPI_CLI_VERSION="${ASYNCAPI_CLI_VERSION:-latest}"
# Pinned: the connector tests name examples of this version (tests/unit/connectors/payloads.py).
WEBHOOKS_EXAMPLES_VERSION="${WEBHOOKS_EXAMPLES_VERSION:-7.6.1}"

say() { printf 'tools: %s\n' "$*" >&2; }
die() { printf 'tools: ERROR: %s\n' "$*" >&2; exit 1; }

# npm_install PREFIX PACKAGE: install PACKAGE under PREFIX whole or not at all. npm writes
# into a scratch prefix beside it, which replaces PREFIX only once the install finished: an
# install killed halfway (or two at once) never leaves a tree that looks installed but lacks
# modules (seen: the AsyncAPI CLI's launcher present, a dependency of it missing).
npm_install() {
    local prefix="$1" package="$2" scratch
    mkdir -p "$(dirname "$prefix")"
    scratch="$(mktemp -d "$prefix.partial.XXXXXX")"
    if ! npm install --no-audit --no-fund --loglevel=error --prefix "$scratch" "$package" >&2; then
        rm -rf "$scratch"
        return 1
    fi
    rm -rf "$prefix"
    mv "$scratch" "$prefix"
}

helm_path() {
    local bin="$TOOLS/bin/helm"
    if [[ ! -x "$bin" ]]; then
        command -v go >/dev/null 2>&1 || die "go not found; it builds helm (install Go 1.24+)"
        say "building helm $HELM_VERSION with go install (first run only, a few minutes)"
        mkdir -p "$TOOLS/bin"
        GOBIN="$TOOLS/bin" go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2 ||
            die "go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION failed"
    fi
    echo "$bin"
}

asyncapi_path() {
    local prefix="$TOOLS/npm" bin="$TOOLS/npm/node_modules/.bin/asyncapi"
    if [[ ! -x "$bin" ]]; then
        command -v npm >/dev/null 2>&1 || die "npm not found; it installs @asyncapi/cli (apt-get install npm)"
        say "installing @asyncapi/cli@$ASYNCAPI_CLI_VERSION with npm (first run only)"
        npm_install "$prefix" "@asyncapi/cli@$ASYNCAPI_CLI_VERSION" || die "npm install @asyncapi/cli failed"
    fi
    # The CLI reports usage over the network unless told not to; the tests point
    # ASYNCAPI_METRICS_CONFIG_PATH at this file.
    [[ -f "$TOOLS/asyncapi-analytics.json" ]] ||
        echo '{"analyticsEnabled":"false","infoMessageShown":"true","userID":"lifecycle-tests"}' \
            >"$TOOLS/asyncapi-analytics.json"
    echo "$bin"
}

webhooks_path() {
    local prefix="$TOOLS/webhooks-examples"
    local package="$prefix/node_modules/@octokit/webhooks-examples"
    local installed=""
    [[ -f "$package/package.json" ]] &&
        installed="$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$package/package.json" | head -1)"
    if [[ "$installed" != "$WEBHOOKS_EXAMPLES_VERSION" || ! -f "$package/api.github.com/index.json" ]]; then
        command -v npm >/dev/null 2>&1 || die "npm not found; it installs @octokit/webhooks-examples (apt-get install npm)"
        say "installing @octokit/webhooks-examples@$WEBHOOKS_EXAMPLES_VERSION with npm"
        npm_install "$prefix" "@octokit/webhooks-examples@$WEBHOOKS_EXAMPLES_VERSION" ||
            die "npm install @octokit/webhooks-examples failed"
    fi
    echo "$package/api.github.com/index.json"
}

case "${1:-all}" in
    helm) helm_path ;;
    asyncapi) asyncapi_path ;;
    webhooks) webhooks_path ;;
    all)
        say "helm: $(helm_path)"
        say "asyncapi: $(asyncapi_path)"
        say "webhooks: $(webhooks_path)"
        ;;
    *) die "usage: bash deploy/tools.sh [helm|asyncapi|webhooks]" ;;
esac
