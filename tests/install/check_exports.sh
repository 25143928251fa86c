#!/bin/sh
# check_exports.sh NM LIB: fails unless the dynamic symbols LIB defines are
# all named lethe_* (and there is at least one).
set -eu
nm_tool=$1 lib=$2
syms=$("$nm_tool" -D --defined-only "$lib" | awk 'NF >= 3 { print $3 }' | sed 's/@.*//' | sort -u)
if [ -z "$syms" ]; then
    echo "FAIL: $lib exports no symbols"
    exit 1
fi
bad=$(printf '%s\n' "$syms" | grep -v '^lethe_' | grep -v '^LETHE_[0-9.]*$' || true)
if [ -n "$bad" ]; then
    echo "FAIL: $lib exports symbols outside the lethe_ namespace:"
    printf '  %s\n' $bad
    exit 1
fi
echo "ok: $(printf '%s\n' "$syms" | wc -l) exported symbols, all lethe_*"
