#include "util/error.h"

#include <stdio.h>

lethe_status set_error(char *err, lethe_status status, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, LETHE_ERR_MAX, fmt, ap);
        va_end(ap);
    }
    return status;
}

void copy_error(char *err, size_t err_size, const char *msg) {
    if (err && err_size) snprintf(err, err_size, "%s", msg);
}
