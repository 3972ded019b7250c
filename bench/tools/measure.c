/*
 * bench/tools/measure.c: run one command and report its wall time and peak
 * RSS, measured from outside (fork/exec/wait4, ru_maxrss).
 *
 *   measure [-p PRELOAD] [-o OUT] [-e ERR] [-i IN] [-t TIMEOUT_S] -- CMD ARGS...
 *
 * -p sets LD_PRELOAD for the child only ("" removes it), so the measuring
 * process itself is never run under the allocator being measured. The child
 * gets its own process group; on timeout the whole group is killed (gcc's
 * cc1/as/ld included). Prints one line on stdout:
 *
 *   wall_s=1.234567 maxrss_kb=12345 user_s=1.2 sys_s=0.1 minflt=123 majflt=0 status=ok
 *
 * status is ok, exit:N, signal:N (core dumps noted as signal:N+core) or
 * timeout. The exit code of measure is 0 unless measure itself failed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t timed_out;

static void on_alarm(int sig)
{
    (void)sig;
    timed_out = 1;
}

static void redirect(const char *path, int fd, int flags)
{
    if (!path)
        return;
    int f = open(path, flags, 0644);
    if (f < 0) {
        fprintf(stderr, "measure: %s: %s\n", path, strerror(errno));
        _exit(126);
    }
    dup2(f, fd);
    close(f);
}

static double tv_s(struct timeval tv) { return (double)tv.tv_sec + (double)tv.tv_usec / 1e6; }

int main(int argc, char **argv)
{
    const char *preload = NULL, *out = NULL, *err = NULL, *in = NULL;
    double timeout_s = 0;
    int opt;
    while ((opt = getopt(argc, argv, "+p:o:e:i:t:")) != -1) {
        switch (opt) {
        case 'p': preload = optarg; break;
        case 'o': out = optarg; break;
        case 'e': err = optarg; break;
        case 'i': in = optarg; break;
        case 't': timeout_s = atof(optarg); break;
        default:
            fprintf(stderr, "usage: measure [-p LIB] [-o OUT] [-e ERR] [-i IN] [-t SECS] -- CMD...\n");
            return 2;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "measure: no command\n");
        return 2;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm; /* no SA_RESTART: wait4 returns EINTR */
    sigaction(SIGALRM, &sa, NULL);

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = fork();
    if (pid < 0) {
        perror("measure: fork");
        return 1;
    }
    if (pid == 0) {
        setpgid(0, 0);
        redirect(in, 0, O_RDONLY);
        redirect(out, 1, O_WRONLY | O_CREAT | O_TRUNC);
        redirect(err, 2, O_WRONLY | O_CREAT | O_TRUNC);
        if (preload) {
            if (*preload)
                setenv("LD_PRELOAD", preload, 1);
            else
                unsetenv("LD_PRELOAD");
        }
        execvp(argv[optind], argv + optind);
        fprintf(stderr, "measure: exec %s: %s\n", argv[optind], strerror(errno));
        _exit(127);
    }
    setpgid(pid, pid); /* also from the parent, to close the race */

    if (timeout_s > 0) {
        struct itimerval it;
        memset(&it, 0, sizeof it);
        it.it_value.tv_sec = (time_t)timeout_s;
        it.it_value.tv_usec = (suseconds_t)((timeout_s - (double)(time_t)timeout_s) * 1e6);
        setitimer(ITIMER_REAL, &it, NULL);
    }

    int status = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    for (;;) {
        pid_t r = wait4(pid, &status, 0, &ru);
        if (r == pid)
            break;
        if (r < 0 && errno == EINTR) {
            if (timed_out) {
                kill(-pid, SIGKILL);
                kill(pid, SIGKILL);
            }
            continue;
        }
        perror("measure: wait4");
        return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    /* leftovers of the group (e.g. a daemonised grandchild) must not linger */
    kill(-pid, SIGKILL);

    char st[64];
    if (timed_out)
        snprintf(st, sizeof st, "timeout");
    else if (WIFEXITED(status))
        if (WEXITSTATUS(status))
            snprintf(st, sizeof st, "exit:%d", WEXITSTATUS(status));
        else
            snprintf(st, sizeof st, "ok");
    else if (WIFSIGNALED(status))
        snprintf(st, sizeof st, "signal:%d%s", WTERMSIG(status), WCOREDUMP(status) ? "+core" : "");
    else
        snprintf(st, sizeof st, "unknown");

    double wall = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("wall_s=%.6f maxrss_kb=%ld user_s=%.3f sys_s=%.3f minflt=%ld majflt=%ld status=%s\n", wall,
           ru.ru_maxrss, tv_s(ru.ru_utime), tv_s(ru.ru_stime), ru.ru_minflt, ru.ru_majflt, st);
    return 0;
}
