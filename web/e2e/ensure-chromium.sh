#!/usr/bin/env bash
# Makes sure Debian's chromium is at /usr/bin/chromium for the end-to-end tests (never a
# browser download: the distribution's package only). Installs it when run as root;
# otherwise fails, saying the command to run.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
  exit 0
fi

command="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium fonts-liberation"
if [ "$(id -u)" -ne 0 ]; then
  echo "ensure-chromium: /usr/bin/chromium is missing; install it as root: $command" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-chromium: /usr/bin/chromium is missing and apt-get is not available; install Chromium so that /usr/bin/chromium exists" >&2
  exit 1
fi

echo "ensure-chromium: installing Debian's chromium" >&2
# Serialise concurrent runs (test binaries may start at once): one apt-get at a time.
exec 9>/tmp/fawkes-ensure-chromium.lock
flock 9
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y --no-install-recommends chromium fonts-liberation >&2 || {
  apt-get update >&2
  apt-get install -y --no-install-recommends chromium fonts-liberation >&2
}
if [ ! -x /usr/bin/chromium ]; then
  echo "ensure-chromium: apt-get finished but /usr/bin/chromium is still missing" >&2
  exit 1
fi
