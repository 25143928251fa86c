#!/usr/bin/env bash
# Installs every Debian 12 package that scripts/check.sh needs (run as root;
# idempotent): the build, gnuplot for the eval plots, clang for the fuzz
# targets, the aarch64 cross compiler, qemu and arm64 PCRE2 for the cross
# step, and the server's libraries.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-deps.sh: no apt-get here; install the packages listed in this script by hand" >&2
    exit 0
fi
dpkg --add-architecture arm64 # the cross build's PCRE2
apt-get update -qq
apt-get install -y -qq build-essential cmake pkg-config libpcre2-dev gnuplot-nox clang \
    gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user libpcre2-dev:arm64 \
    libmicrohttpd-dev libcjson-dev libsimde-dev >/dev/null
# the server tests run the official openai client under Node.js (18 or later);
# a machine that has node already (e.g. from NodeSource) keeps it
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    apt-get install -y -qq nodejs npm >/dev/null
fi
