#!/usr/bin/env bash
# Run every client scenario of the MCP conformance suite through Caddy with
# the oauth_gateway module (see conformance/README.md):
#
#   conformance/run.sh                     # or: make -f xcaddy.mk conformance
#   CONFORMANCE_ONLY='^auth/' conformance/run.sh
#
# Installs what is missing into conformance/.tools (not tracked): Node 22
# (the npm package of its binary) and the suite versions, builds bin/caddy
# and the two helper commands, runs
#   0.2.0-alpha.12 at each scenario's default protocol version,
#   0.2.0-alpha.12 at --spec-version 2026-07-28,
#   0.1.16,
# prints the table and writes conformance/results/ (summary.md, results.json,
# and per scenario the suite's output and checks, the Caddyfile, Caddy's log
# and the client's log). Exits non-zero only when a scenario that
# conformance/expected-failures.txt does not list fails.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
tools=conformance/.tools
suites=(${CONFORMANCE_SUITES:-0.2.0-alpha.12 0.1.16})
spec_2026=${CONFORMANCE_SPEC_2026:-2026-07-28}
mkdir -p "$tools"

npm_install() { # dir package@version
	mkdir -p "$1"
	[ -f "$1/package.json" ] || echo '{"private": true}' >"$1/package.json"
	(cd "$1" && npm install --no-audit --no-fund --no-save --loglevel=error "$2" >/dev/null)
}

# Node >= 22 for the suite: the one on the PATH if new enough, else the
# binary the npm package node-<os>-<arch> ships (no install script runs).
node_bin=
if command -v node >/dev/null && [ "$(node -p 'process.versions.node.split(".")[0]')" -ge 22 ]; then
	node_bin=$(command -v node)
else
	case "$(uname -m)" in
	x86_64 | amd64) arch=x64 ;;
	aarch64 | arm64) arch=arm64 ;;
	*) arch=$(uname -m) ;;
	esac
	os=$(uname -s | tr '[:upper:]' '[:lower:]')
	pkg=node-$os-$arch
	node_bin=$root/$tools/node22/node_modules/$pkg/bin/node
	if [ ! -x "$node_bin" ]; then
		echo "installing Node 22 ($pkg@22) into $tools/node22"
		npm_install "$tools/node22" "$pkg@22"
	fi
fi
echo "node: $node_bin ($("$node_bin" --version))"

suite_args=()
for v in "${suites[@]}"; do
	dir=$tools/suite-$v
	pkgdir=$root/$dir/node_modules/@modelcontextprotocol/conformance
	have=$( [ -f "$pkgdir/package.json" ] && "$node_bin" -p "require('$pkgdir/package.json').version" || true)
	if [ "$have" != "$v" ]; then
		echo "installing @modelcontextprotocol/conformance@$v into $dir"
		npm_install "$dir" "@modelcontextprotocol/conformance@$v"
	fi
	suite_args+=(-suite "$v=$pkgdir")
	case "$v" in
	0.2.*) suite_args+=(-suite "$v@$spec_2026=$pkgdir") ;;
	esac
done

# bin/caddy from this checkout. The xcaddy path of `build` needs the
# module to be resolvable from the Go proxy; where that fails, build the
# main package xcaddy would generate directly (the same binary).
if ! make -s -f xcaddy.mk build; then
	echo "make -f xcaddy.mk build failed; building _build/caddy without xcaddy" >&2
	make -s -f xcaddy.mk gen-main
	GOFLAGS=-trimpath go build -o bin/caddy ./_build/caddy
fi
GOFLAGS=-trimpath go build -o bin/conformance-client ./internal/cmd/conformance-client
GOFLAGS=-trimpath go build -o bin/conformance-run ./internal/cmd/conformance-run

# A loopback-only network namespace for each suite invocation (the suite's
# mock servers listen on all interfaces; Caddy binds 127.0.0.1 anyway):
# unshare -n as root, else -rn where user namespaces are allowed.
netns=false
unshare_flags=-n
if command -v unshare >/dev/null && command -v ip >/dev/null; then
	for f in -n -rn; do
		if unshare "$f" sh -c 'ip link set lo up' >/dev/null 2>&1; then
			netns=true unshare_flags=$f
			break
		fi
	done
fi
if $netns; then
	echo "each scenario runs in a loopback-only network namespace (unshare $unshare_flags)"
else
	echo "WARNING: no network namespace available: the suite's mock servers listen on all interfaces" >&2
fi

exec bin/conformance-run \
	-node "$node_bin" \
	-netns="$netns" -unshare="$unshare_flags" \
	-client "$root/bin/conformance-client" \
	-out "$root/conformance/results" \
	-expected "$root/conformance/expected-failures.txt" \
	${CONFORMANCE_ONLY:+-only "$CONFORMANCE_ONLY"} \
	"${suite_args[@]}"
