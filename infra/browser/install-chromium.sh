#!/bin/sh
# Debian's Chromium and ChromeDriver for the browser tests (tests/browser), where this machine can
# install them: as root with apt-get. Anywhere else it says so and does nothing; those tests then
# skip with the reason. Playwright's own browser download is not used: it fails on closed networks.
set -eu

if [ -x /usr/bin/chromium ]; then
    echo "install-chromium: $(/usr/bin/chromium --version 2>/dev/null || echo chromium) is installed"
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install-chromium: not root or no apt-get; install Chromium yourself (or set" \
        "ECHOSTREAM_CHROMIUM) to run tests/browser, which skip without it"
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium chromium-driver
echo "install-chromium: $(/usr/bin/chromium --version 2>/dev/null) installed"
