/* lethe serve: the OpenAI-compatible HTTP server (src/server/). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

#ifdef LETHE_HAVE_SERVER
#include "server/server.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: lethe serve -m MODEL [options]\n"
            "%s"
            "  --host ADDR            IPv4 address to listen on (default 127.0.0.1: loopback only)\n"
            "  --port N               TCP port (default 8080; 0: any free port, printed at start)\n"
            "  --parallel N           requests running at once (default 4)\n"
            "  --queue N              requests waiting beyond those before 429 (default 64)\n"
            "  --batch-tokens N       tokens per engine step: decodes first, then prefill chunks (default 512)\n"
            "  --api-key KEY          require 'Authorization: Bearer KEY' (also read from LETHE_API_KEY)\n"
            "  --chat-template NAME   chat template family (default: recognised from the model)\n"
            "  --alias NAME           the model id clients use (default: the file name)\n"
            "  --max-body BYTES       largest request body (default 8388608)\n"
            "  --keepalive-ms N       SSE keep-alive comment after N ms without data (default 5000)\n"
            "  --no-prefix-cache      prefill every prompt in full\n"
            "  --memory RULES         structured memory for every request: tim, think, tool (comma-separated;\n"
            "                         docs/memory.md); a request may set its own (\"lethe\": {\"memory\": ...})\n"
            "  --prune-mode M         shift (default) or reencode\n"
            "  --prune-buffer K       tim: closed subtask lists kept (default 2)\n"
            "  --tool NAME=COMMAND    a tool run inside the inference (no shell; JSON arguments on stdin,\n"
            "                         result from stdout); repeatable, needs --memory or a request's memory\n"
            "The KV options above are the default of every request; a request may choose its own\n"
            "with the extension field \"lethe\": {\"kv_policy\": ..., \"kv_budget\": ...}.\n",
            MODEL_OPTS_USAGE);
}

int cmd_serve(int argc, char **argv) {
    model_opts mo;
    model_opts_init(&mo);
    srv_options so;
    srv_options_init(&so);
    so.api_key = getenv("LETHE_API_KEY");
    if (so.api_key && !so.api_key[0]) so.api_key = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        long n;
        bool ok = true;
        int r = model_opts_parse(&mo, argc, argv, &i);
        if (r < 0) return EXIT_USAGE;
        if (r > 0) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--host")) ok = (so.host = opt_value(argc, argv, &i)) != NULL;
        else if (!strcmp(a, "--port")) { if ((ok = opt_int(argc, argv, &i, 0, 65535, &n))) so.port = (int)n; }
        else if (!strcmp(a, "--parallel") || !strcmp(a, "-np")) { if ((ok = opt_int(argc, argv, &i, 1, 1024, &n))) so.parallel = (int)n; }
        else if (!strcmp(a, "--queue")) { if ((ok = opt_int(argc, argv, &i, 0, 1 << 20, &n))) so.queue_max = (int)n; }
        else if (!strcmp(a, "--batch-tokens")) { if ((ok = opt_int(argc, argv, &i, 16, 1 << 16, &n))) so.batch_tokens = (int)n; }
        else if (!strcmp(a, "--api-key")) ok = (so.api_key = opt_value(argc, argv, &i)) != NULL;
        else if (!strcmp(a, "--chat-template")) ok = (so.chat_template = opt_value(argc, argv, &i)) != NULL;
        else if (!strcmp(a, "--alias")) ok = (so.alias = opt_value(argc, argv, &i)) != NULL;
        else if (!strcmp(a, "--max-body")) { if ((ok = opt_int(argc, argv, &i, 1024, 1L << 30, &n))) so.max_body = (size_t)n; }
        else if (!strcmp(a, "--keepalive-ms")) { if ((ok = opt_int(argc, argv, &i, 10, 1 << 30, &n))) so.keepalive_ms = (int)n; }
        else if (!strcmp(a, "--no-prefix-cache")) so.prefix_cache = false;
        else if (!strcmp(a, "--memory")) ok = (so.memory = opt_value(argc, argv, &i)) != NULL;
        else if (!strcmp(a, "--prune-mode")) {
            const char *v = opt_value(argc, argv, &i);
            if ((ok = v != NULL)) {
                if (!strcmp(v, "shift")) so.prune_mode = LETHE_PRUNE_SHIFT;
                else if (!strcmp(v, "reencode")) so.prune_mode = LETHE_PRUNE_REENCODE;
                else { fprintf(stderr, "lethe serve: --prune-mode must be shift or reencode\n"); return usage_error(); }
            }
        } else if (!strcmp(a, "--prune-buffer")) { if ((ok = opt_int(argc, argv, &i, 0, 1 << 20, &n))) so.prune_buffer = (int)n; }
        else if (!strcmp(a, "--tool")) {
            const char *v = opt_value(argc, argv, &i);
            if ((ok = v != NULL)) {
                const char *eq = strchr(v, '=');
                if (!eq || eq == v || !eq[1] || eq - v >= 64 || so.n_tools == 16) {
                    fprintf(stderr, "lethe serve: --tool needs NAME=COMMAND (at most 16 tools)\n");
                    return usage_error();
                }
                so.tools[so.n_tools++] = v;
            }
        }
        else return unknown_option(a);
        if (!ok) return EXIT_USAGE;
    }
    if (!model_opts_check(&mo)) return EXIT_USAGE;
    if (!mo.model) {
        fprintf(stderr, "lethe serve: need -m MODEL\n");
        return usage_error();
    }
    so.model_path = mo.model;
    so.tokenizer_path = mo.tokenizer;
    so.n_threads = mo.n_threads;
    so.n_ctx = mo.n_ctx;
    so.kv_type = mo.kv_type;
    so.kv_page_slots = mo.kv_page_slots;
    so.kv_budget_mib = mo.kv_budget_mib;
    so.kv = mo.kv;
    return srv_run(&so);
}
#else
int cmd_serve(int argc, char **argv) {
    fprintf(stderr, "lethe serve: this build has no server (it needs libmicrohttpd and cJSON: apt-get install "
                    "libmicrohttpd-dev libcjson-dev, then configure again)\n");
    return 1;
}
#endif
