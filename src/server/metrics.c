/* GET /metrics: the server's counters in Prometheus' text format. */
#include <stdio.h>

#include "server/server.h"

static void metric(sbuf *b, const char *name, const char *type, const char *help, double v) {
    sbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, v);
}

void srv_metrics_text(srv_server *s, sbuf *b) {
    pthread_mutex_lock(&s->lock);
    srv_metrics m = s->met;
    pthread_mutex_unlock(&s->lock);
    sbuf_printf(b, "# HELP lethe_requests_total HTTP responses by status.\n# TYPE lethe_requests_total counter\n");
    for (int st = 100; st < 600; st++)
        if (m.by_status[st]) sbuf_printf(b, "lethe_requests_total{status=\"%d\"} %llu\n", st, (unsigned long long)m.by_status[st]);
    metric(b, "lethe_requests_cancelled_total", "counter", "Requests whose client went away before the end.", (double)m.requests_cancelled);
    metric(b, "lethe_requests_rejected_queue_full_total", "counter", "Requests answered 429 (queue full).", (double)m.requests_429);
    metric(b, "lethe_prompt_tokens_total", "counter", "Prompt tokens of finished requests (cached ones included).", (double)m.prompt_tokens);
    metric(b, "lethe_generated_tokens_total", "counter", "Tokens generated for finished requests.", (double)m.generated_tokens);
    metric(b, "lethe_queue_length", "gauge", "Requests waiting to be admitted.", m.queue_len);
    metric(b, "lethe_active_sequences", "gauge", "Requests running in the engine.", m.active);
    metric(b, "lethe_steps_total", "counter", "Batched engine steps.", (double)m.steps);
    metric(b, "lethe_step_seconds_total", "counter", "Time in batched engine steps.", m.step_seconds);
    metric(b, "lethe_time_to_first_token_seconds_total", "counter", "Arrival to first token, summed over requests.", m.prefill_seconds);
    metric(b, "lethe_kv_bytes_used", "gauge", "KV pool bytes held (shared pages once).", (double)m.kv_used);
    metric(b, "lethe_kv_bytes_budget", "gauge", "KV pool bytes: the server's hard cap.", (double)m.kv_total);
    metric(b, "lethe_kv_bytes_peak", "gauge", "Most KV pool bytes held at once.", (double)m.kv_peak);
    metric(b, "lethe_kv_bytes_reserved", "gauge", "KV pool bytes reserved by admitted requests (worst case).", (double)m.kv_reserved);
    metric(b, "lethe_kv_cold_bytes", "gauge", "Cold-tier bytes of running sequences (quest, mixed).", (double)m.kv_cold);
    metric(b, "lethe_kv_staging_bytes", "gauge", "Scratch that cold pages are attended from.", (double)m.kv_staging);
    metric(b, "lethe_kv_policy_evicted_tokens_total", "counter", "Cache slots KV policies dropped, over finished requests (per stream, the least).", (double)m.evicted_tokens);
    metric(b, "lethe_memory_spans_pruned_total", "counter", "Structured memory: spans pruned.", (double)m.mem_spans_pruned);
    metric(b, "lethe_memory_tokens_pruned_total", "counter", "Structured memory: cached tokens pruned.", (double)m.mem_tokens_pruned);
    metric(b, "lethe_memory_bytes_freed_total", "counter", "Structured memory: KV bytes freed by pruning.", (double)m.mem_bytes_freed);
    metric(b, "lethe_memory_tool_calls_total", "counter", "Server tools run inside the inference.", (double)m.mem_tool_calls);
    metric(b, "lethe_memory_tool_errors_total", "counter", "Server tool runs that failed (the model got an error text).", (double)m.mem_tool_errors);
    metric(b, "lethe_memory_tool_seconds_total", "counter", "Time in server tools.", m.mem_tool_seconds);
    metric(b, "lethe_tool_calls_returned_total", "counter", "Client tool calls returned as tool_calls.", (double)m.tool_calls_returned);
    metric(b, "lethe_prefix_cache_entries", "gauge", "Finished sequences kept for their prefix.", m.prefix_entries);
    metric(b, "lethe_prefix_cache_bytes", "gauge", "KV bytes the kept prefixes hold (upper bound).", (double)m.prefix_bytes);
    metric(b, "lethe_prefix_cache_lookups_total", "counter", "Prompts looked up in the prefix cache.", (double)m.prefix_lookups);
    metric(b, "lethe_prefix_cache_hits_total", "counter", "Prompts that reused cached pages.", (double)m.prefix_hits);
    metric(b, "lethe_prefix_cache_cached_tokens_total", "counter", "Prompt tokens reused instead of prefilled.", (double)m.cached_tokens);
    metric(b, "lethe_prefix_cache_evictions_total", "counter", "Kept prefixes dropped to admit requests.", (double)m.evictions_prefix);
}
