#!/bin/sh
# Install the Debian packages xpfdp builds and tests with; quiet and quick when all are present.
set -eu

PACKAGES="clang llvm libxdp-dev libbpf-dev libelf-dev zlib1g-dev pkg-config gcc make \
iproute2 ethtool traceroute iputils-tracepath"

missing=""
for pkg in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
        || missing="$missing $pkg"
done
if ! python3 -c "import venv, ensurepip, sysconfig; assert sysconfig.get_paths()['include']" \
        2>/dev/null; then
    missing="$missing python3-venv python3-dev"
fi
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
        echo "xpfdp: missing Debian packages:$missing (run as root or install them)" >&2
        exit 1
    fi
else
    SUDO=""
fi
echo "xpfdp: installing Debian packages:$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
