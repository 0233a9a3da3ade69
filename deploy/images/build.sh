#!/usr/bin/env bash
# Builds the images of ferry-relay and ferry-rendezvous with podman (or
# buildah) from deploy/images/Containerfile. The binaries are compiled here,
# static (CGO_ENABLED=0) with the version stamped in, so the build pulls
# nothing from a registry (the images are FROM scratch).
#
#   VERSION   the version stamped and tagged (default: git describe, or dev)
#   IMAGE_REPO  the repository prefix of the tags (default: localhost/ferrynet)
#
# Tags: $IMAGE_REPO/ferry-relay:$VERSION and $IMAGE_REPO/ferry-rendezvous:$VERSION.
set -euo pipefail

cd "$(dirname "$0")/../.."
VERSION="${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}"
IMAGE_REPO="${IMAGE_REPO:-localhost/ferrynet}"
REVISION="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)"

if command -v podman >/dev/null; then
	builder=(podman build)
elif command -v buildah >/dev/null; then
	builder=(buildah build)
else
	echo "images: neither podman nor buildah is installed." >&2
	echo "images: install one (as root: apt-get install podman, or make deps) and run make images again." >&2
	exit 1
fi

ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
for cmd in ferry-relay ferry-rendezvous; do
	CGO_ENABLED=0 go build -trimpath -buildvcs=false \
		-ldflags "-s -w -X github.com/ferrynet/ferry/internal/cliconf.Version=${VERSION}" \
		-o "$ctx/$cmd" "./cmd/$cmd"
done
roots=/etc/ssl/certs/ca-certificates.crt
if [ ! -s "$roots" ]; then
	echo "images: $roots is missing (Debian: apt-get install ca-certificates)" >&2
	exit 1
fi
cp "$roots" "$ctx/ca-certificates.crt"

for cmd in ferry-relay ferry-rendezvous; do
	echo "images: building $IMAGE_REPO/$cmd:$VERSION"
	# --no-cache: the stages are a few COPYs, and a cached stage would keep
	# an older build's version and revision labels.
	"${builder[@]}" --quiet --no-cache --file deploy/images/Containerfile --target "$cmd" \
		--build-arg "VERSION=$VERSION" --build-arg "REVISION=$REVISION" --build-arg "CREATED=$CREATED" \
		--tag "$IMAGE_REPO/$cmd:$VERSION" "$ctx"
done
