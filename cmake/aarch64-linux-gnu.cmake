# Cross-compiling for 64-bit Arm Linux with Debian's gcc-aarch64-linux-gnu;
# libraries (PCRE2) come from Debian's arm64 multiarch packages
# (dpkg --add-architecture arm64; apt-get install libpcre2-dev:arm64), and
# CTest runs the test programs under qemu-user.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(lethe_triple aarch64-linux-gnu)

set(CMAKE_C_COMPILER ${lethe_triple}-gcc)
set(CMAKE_FIND_ROOT_PATH /usr/${lethe_triple})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_LIBRARY_ARCHITECTURE ${lethe_triple})

# pkg-config must see only the arm64 .pc files.
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/${lethe_triple}/pkgconfig:/usr/share/pkgconfig)
set(ENV{PKG_CONFIG_PATH} "")

# ctest runs each test program under qemu-user. libpcre2-dev:arm64 brings
# Debian's arm64 libc (libc6:arm64), whose loader /lib/ld-linux-aarch64.so.1
# qemu then finds by itself. Do not add "-L /usr/aarch64-linux-gnu" then: it
# mixes the cross package's loader with the multiarch libc (a different
# build), and pthread_create hangs.
if(EXISTS /lib/ld-linux-aarch64.so.1)
  set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64)
else()
  set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64 -L /usr/${lethe_triple})
endif()
