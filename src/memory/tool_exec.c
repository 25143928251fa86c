/* Tools that are programs: fork / execvp without a shell (argv split on
 * spaces), the call's JSON on stdin, the result from stdout, a poll-based
 * wall-clock timeout, an output cap; the program is killed when it runs
 * past either. stdin is a socket pair so a program that exits without
 * reading cannot raise SIGPIPE in the caller (send with MSG_NOSIGNAL). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "memory/memory.h"
#include "util/alloc.h"

static long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void close_fd(int *fd) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
}

int tool_exec_run(const char *command, const char *input, size_t n_in, int timeout_ms, char *out, size_t cap,
                  size_t *n_out, bool *cut, char *err, size_t err_size) {
    *n_out = 0;
    *cut = false;
    size_t len = strlen(command);
    char *copy = lt_malloc(len + 1);
    char **argv = lt_malloc((len / 2 + 2) * sizeof *argv);
    if (!copy || !argv) {
        lt_free(copy);
        lt_free(argv);
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    memcpy(copy, command, len + 1);
    int argc = 0;
    for (char *p = copy; *p;) {
        while (*p == ' ') *p++ = 0;
        if (!*p) break;
        argv[argc++] = p;
        while (*p && *p != ' ') p++;
    }
    argv[argc] = NULL;
    int in[2] = {-1, -1}, outp[2] = {-1, -1}, ep[2] = {-1, -1};
    int rc = -1;
    pid_t pid = -1;
    if (argc == 0) {
        snprintf(err, err_size, "empty command");
        goto done;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in) || pipe2(outp, O_CLOEXEC) || pipe2(ep, O_CLOEXEC)) {
        snprintf(err, err_size, "cannot make pipes: %s", strerror(errno));
        goto done;
    }
    pid = fork();
    if (pid < 0) {
        snprintf(err, err_size, "cannot fork: %s", strerror(errno));
        goto done;
    }
    if (pid == 0) { /* child: only async-signal-safe calls */
        int devnull = open("/dev/null", O_WRONLY);
        dup2(in[1], 0);
        dup2(outp[1], 1);
        if (devnull >= 0) dup2(devnull, 2);
        execvp(argv[0], argv);
        int e = errno;
        ssize_t w = write(ep[1], &e, sizeof e);
        (void)w;
        _exit(127);
    }
    close_fd(&in[1]);
    close_fd(&outp[1]);
    close_fd(&ep[1]);
    int exec_errno = 0;
    if (read(ep[0], &exec_errno, sizeof exec_errno) == (ssize_t)sizeof exec_errno) {
        snprintf(err, err_size, "cannot run '%s': %s", argv[0], strerror(exec_errno));
        waitpid(pid, NULL, 0);
        pid = -1;
        goto done;
    }
    fcntl(in[0], F_SETFL, O_NONBLOCK);
    fcntl(outp[0], F_SETFL, O_NONBLOCK);
    const long deadline = now_ms() + timeout_ms;
    size_t sent = 0;
    if (n_in == 0) shutdown(in[0], SHUT_WR);
    bool eof = false, timed_out = false;
    while (!eof) {
        long left = deadline - now_ms();
        if (left <= 0) { timed_out = true; break; }
        struct pollfd fds[2] = {{outp[0], POLLIN, 0}, {in[0], POLLOUT, 0}};
        int nf = sent < n_in && in[0] >= 0 ? 2 : 1;
        int r = poll(fds, (nfds_t)nf, (int)left);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) break;
        if (nf == 2 && (fds[1].revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t w = send(in[0], input + sent, n_in - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w > 0) sent += (size_t)w;
            else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) sent = n_in; /* it stopped reading */
            if (sent >= n_in) shutdown(in[0], SHUT_WR);
        }
        if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t k = read(outp[0], out + *n_out, cap - *n_out);
            if (k > 0) {
                *n_out += (size_t)k;
                if (*n_out >= cap) { *cut = true; break; }
            } else if (k == 0 || (errno != EAGAIN && errno != EINTR)) eof = true;
        }
    }
    if (timed_out || *cut) kill(pid, SIGKILL);
    int status = 0;
    /* after EOF the program may still run: wait within the deadline */
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid || (w < 0 && errno != EINTR)) break;
        if (now_ms() >= deadline) {
            timed_out = !*cut;
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            break;
        }
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    pid = -1;
    if (timed_out) snprintf(err, err_size, "timed out after %d ms", timeout_ms);
    else if (*cut) rc = 0;
    else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) rc = 0;
    else if (WIFEXITED(status)) snprintf(err, err_size, "exited with status %d", WEXITSTATUS(status));
    else snprintf(err, err_size, "killed by signal %d", WIFSIGNALED(status) ? WTERMSIG(status) : 0);
done:
    close_fd(&in[0]);
    close_fd(&in[1]);
    close_fd(&outp[0]);
    close_fd(&outp[1]);
    close_fd(&ep[0]);
    close_fd(&ep[1]);
    lt_free(copy);
    lt_free(argv);
    return rc;
}
