/* The test helpers themselves: a skip must never hide a failure. Each case
 * runs in a child process (tu_skip exits) and the exit status is checked:
 * 77 for a clean skip, 1 for a skip after a failed check, 1 for any skip
 * with LETHE_REQUIRE_MODELS=1, and 1 for a test that ran no checks. */
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

enum { CLEAN_SKIP, SKIP_AFTER_FAIL, PART_SKIP, NO_CHECKS };

/* What the child does: a small test that ends in a skip or tu_finish. */
static int child(int what) {
    tu_failures = tu_checks = 0;
    switch (what) {
    case CLEAN_SKIP: CHECK(1); tu_skip("clean skip"); break;
    case SKIP_AFTER_FAIL: CHECK(0); tu_skip("skip after a failure"); break;
    case PART_SKIP: CHECK(1); tu_skip_part("part skipped"); return tu_finish("child");
    case NO_CHECKS: return tu_finish("child");
    }
    return 3; /* tu_skip returned: wrong */
}

static int run_child(int what, const char *require) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        /* the child's FAIL lines are expected: keep them out of the log */
        if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr)) _exit(4);
        if (require) setenv("LETHE_REQUIRE_MODELS", require, 1);
        else unsetenv("LETHE_REQUIRE_MODELS");
        exit(child(what));
    }
    int st;
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st)) return -1;
    return WEXITSTATUS(st);
}

/* Runs case what with LETHE_REQUIRE_MODELS=req (NULL: unset). */
static void expect(int what, const char *req, int want, const char *msg) {
    int got = run_child(what, req);
    CHECKF(got == want, "%s: want exit %d, got %d", msg, want, got);
}

int main(void) {
    expect(CLEAN_SKIP, NULL, 77, "a clean skip exits 77");
    expect(CLEAN_SKIP, "0", 77, "LETHE_REQUIRE_MODELS=0: a clean skip exits 77");
    expect(SKIP_AFTER_FAIL, NULL, 1, "a skip after a failed check exits 1");
    expect(CLEAN_SKIP, "1", 1, "LETHE_REQUIRE_MODELS=1: a skip exits 1");
    expect(PART_SKIP, NULL, 0, "a skipped part alone passes");
    expect(PART_SKIP, "1", 1, "LETHE_REQUIRE_MODELS=1: a skipped part fails");
    expect(NO_CHECKS, NULL, 1, "a test with no checks fails");

    /* tu_data_path follows LETHE_DATA_DIR (CTest sets it to the tree's data/) */
    const char *dir = getenv("LETHE_DATA_DIR");
    if (dir) {
        const char *p = tu_data_path("eval/stories.txt");
        CHECKF(strncmp(p, dir, strlen(dir)) == 0 && tu_file_exists(p), "tu_data_path: %s", p);
    } else {
        CHECK(strcmp(tu_data_path("x"), "data/x") == 0);
    }
    return tu_finish("test_testutil");
}
