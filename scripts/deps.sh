#!/usr/bin/env bash
# Installs what Ferry's tests need, when it is missing:
#   - Debian packages (as root): coturn (turnserver, turnutils_*), redis-server,
#     conntrack (the NAT lab flushes a router's mappings with it),
#     miniupnpd-nftables (the NAT lab's port-mapping router: miniupnpd with its
#     nftables backend), nftables, ethtool, iproute2, protobuf-compiler, podman and
#     ca-certificates (the images, `make images` and the chart checks);
#   - Go tools at pinned versions, with `go install`.
# With --go-tools, only the Go tools.
set -euo pipefail

GOLANGCI_LINT_VERSION=v2.15.0
DEB_PACKAGES=(coturn miniupnpd-nftables redis-server nftables ethtool iproute2 conntrack protobuf-compiler podman ca-certificates)

install_debs() {
	local missing=()
	for p in "${DEB_PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" -ne 0 ]; then
		echo "deps: missing Debian packages: ${missing[*]}" >&2
		echo "deps: run as root, or: sudo apt-get install ${missing[*]}" >&2
		return 1
	fi
	echo "deps: installing ${missing[*]}"
	# Keep package scripts from starting daemons (turnserver, redis) on their
	# default ports: tests start their own, on free ports.
	local policy=/usr/sbin/policy-rc.d created=0
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created=1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}"
	[ "$created" = 1 ] && rm -f "$policy"
	return 0
}

install_go_tools() {
	local gobin
	gobin="$(go env GOPATH)/bin"
	if ! "$gobin/golangci-lint" version 2>/dev/null | grep -q "version ${GOLANGCI_LINT_VERSION#v}"; then
		echo "deps: installing golangci-lint ${GOLANGCI_LINT_VERSION}"
		GOFLAGS=-buildvcs=false go install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@${GOLANGCI_LINT_VERSION}"
	fi
}

if [ "${1:-}" != "--go-tools" ]; then
	install_debs
fi
install_go_tools
