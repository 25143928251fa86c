#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

/* The project version from CMake (project(lethe VERSION ...)). */
#ifndef LETHE_VERSION_STRING_CLI
#error "build lethe with CMake: LETHE_VERSION_STRING_CLI is not defined"
#endif

static void usage(FILE *f) {
    fprintf(f,
            "usage: lethe <command> [options]\n"
            "commands:\n"
            "  run       generate text from a prompt\n"
            "  chat      an interactive chat (the model's chat template; one user message per stdin line)\n"
            "  info      print a model's metadata and tensor table\n"
            "  tokenize  print the tokens of a text\n"
            "  bench     measure prompt / generation speed (also: bench attn, bench kernels)\n"
            "  eval      quality per KV byte of the KV policies against the full cache (ppl, passkey, agree, sweep)\n"
            "  serve     an OpenAI-compatible HTTP server with continuous batching\n"
            "  quantize  write a GGUF with its weights quantised (Q8_0, Q4_0, ..., Q4_K_M, Q5_K_M, Q6_K)\n"
            "  synth-model  write a random-weight F16 GGUF of a real model's shape (for speed tests)\n"
            "  --version print the version\n"
            "run 'lethe <command> --help' for the options of a command\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (cmd[0] != '-') cli_cmd = cmd;
    if (!strcmp(cmd, "run")) return cmd_run(argc - 1, argv + 1);
    if (!strcmp(cmd, "chat")) return cmd_chat(argc - 1, argv + 1);
    if (!strcmp(cmd, "info")) return cmd_info(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench")) return cmd_bench(argc - 1, argv + 1);
    if (!strcmp(cmd, "tokenize")) return cmd_tokenize(argc - 1, argv + 1);
    if (!strcmp(cmd, "eval")) return cmd_eval(argc - 1, argv + 1);
    if (!strcmp(cmd, "serve")) return cmd_serve(argc - 1, argv + 1);
    if (!strcmp(cmd, "quantize")) return cmd_quantize(argc - 1, argv + 1);
    if (!strcmp(cmd, "synth-model")) return cmd_synth(argc - 1, argv + 1);
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("lethe %s\n", LETHE_VERSION_STRING_CLI);
        return 0;
    }
    fprintf(stderr, "lethe: unknown command '%s' (run, chat, serve, info, tokenize, bench, eval, quantize, synth-model)\n", cmd);
    fprintf(stderr, "run 'lethe --help' for usage\n");
    return EXIT_USAGE;
}
