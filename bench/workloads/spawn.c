/*
 * Workload 9: start-up cost.
 *
 *   spawn COUNT [PROGRAM=/bin/true]
 *
 * Runs PROGRAM COUNT times, one after another (fork/exec/wait), inheriting
 * the environment, so an LD_PRELOAD given to this program applies to every
 * child: the figure is dominated by loading and initialising the allocator.
 *
 * Prints: runs= secs= us_per_run=
 */
#include "common.h"
#include <sys/wait.h>

int main(int argc, char **argv)
{
    long count = (long)arg_num(argc, argv, 1, 500);
    const char *prog = argc > 2 ? argv[2] : "/bin/true";
    char *const args[] = { (char *)prog, NULL };
    extern char **environ;
    uint64_t t0 = now_ns();
    for (long i = 0; i < count; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            execve(prog, args, environ);
            _exit(127);
        }
        int st;
        if (pid < 0 || waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "spawn: run %ld of %s failed\n", i, prog);
            return 1;
        }
    }
    double secs = secs_since(t0);
    printf("runs=%ld secs=%.4f us_per_run=%.1f\n", count, secs, secs * 1e6 / (double)count);
    return 0;
}
