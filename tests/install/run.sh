#!/bin/sh
# run.sh BUILD_DIR: installs BUILD_DIR into a temporary prefix, then builds
# lethe_hello.c against the installed library through pkg-config, once
# linked to liblethe.so and once to liblethe.a, and runs both on
# $LETHE_MODELS/stories260K.gguf (default ../shared/models).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "$1" && pwd)
models=${LETHE_MODELS:-$here/../../../shared/models}
model=$models/stories260K.gguf
cc=${CC:-cc}
prefix=$(mktemp -d "${TMPDIR:-/tmp}/lethe-install.XXXXXX")
trap 'rm -rf "$prefix"' EXIT

cmake --install "$build" --prefix "$prefix" >/dev/null
for f in bin/lethe include/lethe.h lib/liblethe.a lib/liblethe.so lib/pkgconfig/lethe.pc; do
    [ -e "$prefix/$f" ] || { echo "FAIL: cmake --install did not put $f in place"; exit 1; }
done
"$prefix/bin/lethe" --version

export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
flags=$(pkg-config --cflags --libs lethe)
echo "pkg-config --cflags --libs lethe: $flags"
# shared: the plain pkg-config line (-llethe picks liblethe.so)
$cc -std=c11 -Wall -Wextra -Werror "$here/lethe_hello.c" -o "$prefix/hello_shared" $flags
# static: the same line with -llethe replaced by the archive
static_flags=$(printf '%s' "$flags" | sed 's/-llethe/-l:liblethe.a/')
$cc -std=c11 -Wall -Wextra -Werror "$here/lethe_hello.c" -o "$prefix/hello_static" $static_flags

if ! readelf -d "$prefix/hello_shared" | grep -q 'NEEDED.*liblethe\.so'; then
    echo "FAIL: hello_shared is not linked to liblethe.so"; exit 1
fi
if readelf -d "$prefix/hello_static" | grep -q 'NEEDED.*liblethe'; then
    echo "FAIL: hello_static needs liblethe.so"; exit 1
fi
if [ ! -f "$model" ]; then
    if [ -n "${LETHE_REQUIRE_MODELS:-}" ] && [ "${LETHE_REQUIRE_MODELS}" != 0 ]; then
        echo "FAIL: $model not found (LETHE_REQUIRE_MODELS is set)"; exit 1
    fi
    echo "SKIPPED: $model not found; built but did not run the install test programs"
    exit 0
fi
LD_LIBRARY_PATH="$prefix/lib" "$prefix/hello_shared" "$model"
"$prefix/hello_static" "$model"
echo "install test: ok (shared and static)"
