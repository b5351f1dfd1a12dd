// zlib, for gzip-compressed pprof output. Part of every Swift toolchain
// image (zlib1g-dev on Debian/Ubuntu).
#include <zlib.h>
