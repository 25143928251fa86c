/* Error reporting below the CLI: functions return a lethe_status and write a
 * message into a caller-owned buffer. Nothing here exits or aborts. */
#ifndef LETHE_ERROR_H
#define LETHE_ERROR_H

#include <stdarg.h>
#include <stddef.h>
#include "lethe.h"

#define LETHE_ERR_MAX 512

/* Formats into err (size LETHE_ERR_MAX) when err is non-NULL; returns status. */
lethe_status set_error(char *err, lethe_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The constructors' err / err_size buffers (lethe.h): copies msg when err
 * is non-NULL and err_size > 0. */
void copy_error(char *err, size_t err_size, const char *msg);

#endif
