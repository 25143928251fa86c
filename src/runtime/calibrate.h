/* Calibration for per-head KV budgets (the headwise policy): how far back
 * each (layer, KV head) attends, measured once on a calibration text with
 * the full cache, saved to a small file and reused. */
#ifndef LETHE_CALIBRATE_H
#define LETHE_CALIBRATE_H

#include "runtime/engine.h"

/* Fills reach[n_layer * n_head_kv] with each stream's share of attention
 * mass that went to slots older than the recent window (params->window,
 * or a quarter of params->budget). Reads params->calib_path when it exists;
 * otherwise measures on the built-in calibration text and, when
 * calib_path is set, writes the file. Message in err on failure. */
lethe_status calibrate_load_or_run(lethe_ctx *c, const policy_params *params, float *reach, char *err);

/* Fills score[n_layer * n_head_kv] with each stream's retrieval score: the
 * mean share of its attention mass that went back to a span of random
 * tokens while the span was repeated (a copy task inside the built-in
 * text, with the full cache). Measured once per context and kept there
 * (c->retrieval); LETHE_ERR_BUDGET when the context or pool has no room
 * for the pass. */
lethe_status calibrate_retrieval(lethe_ctx *c, float *score, char *err);

#endif
