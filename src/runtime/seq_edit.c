/* Editing a sequence's cached positions: remove a range, shift a range
 * (re-rotating cached keys with the model's RoPE), truncate (rollback). */
#include <string.h>

#include "runtime/engine.h"

/* Range checks shared by the edits. */
static lethe_status check_range(lethe_seq *s, int p0, int p1) {
    if (p0 < 0 || p1 < p0) return set_error(s->err, LETHE_ERR_ARG, "position range [%d, %d) is not valid", p0, p1);
    return LETHE_OK;
}

lethe_status lethe_seq_remove(lethe_seq *s, int p0, int p1) {
    if (!s) return LETHE_ERR_ARG;
    s->err[0] = 0;
    lethe_status st = check_range(s, p0, p1);
    if (st) return st;
    st = seq_remove_range(s, p0, p1);
    if (st) return st;
    if (p1 >= s->pos_next && p0 < s->pos_next) s->pos_next = p0;
    return LETHE_OK;
}

lethe_status lethe_seq_truncate(lethe_seq *s, int pos) {
    if (!s) return LETHE_ERR_ARG;
    s->err[0] = 0;
    if (pos < 0) return set_error(s->err, LETHE_ERR_ARG, "truncate: position %d is negative", pos);
    lethe_status st = seq_remove_range(s, pos, INT32_MAX);
    if (st) return st;
    s->pos_next = pos;
    return LETHE_OK;
}

lethe_status lethe_seq_shift(lethe_seq *s, int p0, int p1, int delta) {
    if (!s) return LETHE_ERR_ARG;
    s->err[0] = 0;
    lethe_status st = check_range(s, p0, p1);
    if (st) return st;
    if (delta == 0 || p0 == p1) return LETHE_OK;
    if (delta < 0 && p0 + delta < 0)
        return set_error(s->err, LETHE_ERR_ARG, "shift: positions from %d would move below 0 by %d", p0, delta);
    if (delta > 0 && (long)(p1 < s->pos_next ? p1 : s->pos_next) + delta > INT32_MAX / 2)
        return set_error(s->err, LETHE_ERR_ARG, "shift: positions would overflow");
    st = seq_shift_range(s, p0, p1, delta);
    if (st) return st;
    if (p1 >= s->pos_next && p0 <= s->pos_next) s->pos_next += delta;
    return LETHE_OK;
}
