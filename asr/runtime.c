/*
 * runtime.c - process-wide settings the engine needs before it starts (see earshot.h).
 *
 * libgomp reads OMP_WAIT_POLICY once, when it is loaded, before main runs; so the only way for a
 * program to choose the policy is to set it and start itself again. The exec replaces the
 * process image in place (same pid, same open files, same arguments), which is why it must
 * happen first thing in main.
 */
#include "earshot.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

void es_prefer_passive_threads(char **argv)
{
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT"))
        return; /* the user chose */
    if (setenv("OMP_WAIT_POLICY", "passive", 1) != 0)
        return;
    execv("/proc/self/exe", argv);
    /* No /proc (or exec refused): go on with the default policy; only slower under contention. */
    unsetenv("OMP_WAIT_POLICY");
}
