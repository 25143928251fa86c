#!/bin/sh
# Runs one server test file with node (CTest: run.sh NODE FILE). Skips (77)
# when the openai package is not installed (npm ci in tests/server), unless
# LETHE_REQUIRE_MODELS=1 (CI), where that is a failure.
node=$1
file=$2
dir=$(dirname "$file")
if [ ! -d "$dir/node_modules/openai" ]; then
    echo "SKIPPED: the openai npm package is not installed (run 'npm ci' in $dir)"
    [ "$LETHE_REQUIRE_MODELS" = 1 ] && exit 1
    exit 77
fi
exec "$node" --test-reporter=spec "$file"
