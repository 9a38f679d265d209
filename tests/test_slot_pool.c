/*
 * test_slot_pool.c - the session-state pool: allocation order, exhaustion, zeroing, guards
 * against double release, region addressing and accounting.
 */
#include "slot_pool.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

static int passed, failed;

static void check(int ok, const char *what)
{
    printf("  %-4s %s\n", ok ? "ok" : "FAIL", what);
    ok ? passed++ : failed++;
}

int main(void)
{
    size_t regions[3] = {100, 1, 4096};
    es_slot_pool *p = es_slot_pool_create(3, regions, 3);
    check(p != NULL, "create 3 slots of 3 regions");
    if (!p)
        return 1;
    check(es_slot_pool_capacity(p) == 3 && es_slot_pool_in_use(p) == 0, "capacity 3, none in use");
    check(es_slot_pool_bytes_per_slot(p) == 128 + 64 + 4096, "regions rounded up to 64 bytes each");
    int a = es_slot_acquire(p), b = es_slot_acquire(p), c = es_slot_acquire(p);
    check(a == 0 && b == 1 && c == 2, "slots handed out lowest first");
    check(es_slot_acquire(p) == -1, "a full pool refuses with -1");
    check(es_slot_pool_in_use(p) == 3, "three in use");

    unsigned char *r0 = es_slot_region(p, 1, 0), *r2 = es_slot_region(p, 1, 2);
    check(((uintptr_t)r0 % 64) == 0 && ((uintptr_t)r2 % 64) == 0, "regions are 64-byte aligned");
    check((unsigned char *)es_slot_region(p, 2, 0) - (unsigned char *)es_slot_region(p, 1, 0) == 128,
          "a region is one array over the slots (stride = region size)");
    memset(r0, 0xAB, 100);
    memset(r2, 0xCD, 4096);
    unsigned char *other = es_slot_region(p, 0, 2);
    check(other[0] == 0 && other[4095] == 0, "writing one slot leaves its neighbours alone");

    es_slot_release(p, 1);
    es_slot_release(p, 1); /* double release must not free the slot twice */
    check(es_slot_pool_in_use(p) == 2, "double release is ignored");
    es_slot_release(p, 7);
    es_slot_release(p, -1);
    check(es_slot_pool_in_use(p) == 2, "out-of-range release is ignored");
    int again = es_slot_acquire(p);
    check(again == 1, "a released slot is reused");
    check(es_slot_acquire(p) == -1, "only one slot was free");
    int zero = 1;
    unsigned char *z0 = es_slot_region(p, again, 0), *z2 = es_slot_region(p, again, 2);
    for (int i = 0; i < 100; i++)
        zero &= z0[i] == 0;
    for (int i = 0; i < 4096; i++)
        zero &= z2[i] == 0;
    check(zero, "a reacquired slot starts zeroed (a new stream's state)");

    check(es_slot_pool_create(0, regions, 3) == NULL, "zero slots refused");
    check(es_slot_pool_create(1, regions, 0) == NULL, "zero regions refused");
    check(es_slot_pool_create(1, regions, ES_POOL_MAX_REGIONS + 1) == NULL, "too many regions refused");
    es_slot_pool_free(p);
    es_slot_pool_free(NULL);
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
