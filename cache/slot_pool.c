/*
 * slot_pool.c - fixed-capacity slot allocator over region-major arrays (see slot_pool.h).
 *
 * The free list is a stack of slot indices; `taken` guards against double release, which
 * would otherwise hand one slot to two streams and mix their audio.
 */
#include "slot_pool.h"

#include <stdlib.h>
#include <string.h>

struct es_slot_pool {
    int n_slots, n_regions, in_use;
    size_t stride[ES_POOL_MAX_REGIONS];
    unsigned char *base[ES_POOL_MAX_REGIONS];
    int *free_stack; /* free slot indices; top = free_stack[n_free - 1] */
    int n_free;
    unsigned char *taken;
};

static size_t round_up_64(size_t n)
{
    return (n + 63) & ~(size_t)63;
}

es_slot_pool *es_slot_pool_create(int n_slots, const size_t *region_bytes, int n_regions)
{
    if (n_slots < 1 || n_regions < 1 || n_regions > ES_POOL_MAX_REGIONS)
        return NULL;
    es_slot_pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->n_slots = n_slots;
    p->n_regions = n_regions;
    p->free_stack = malloc(sizeof(int) * (size_t)n_slots);
    p->taken = calloc((size_t)n_slots, 1);
    int ok = p->free_stack && p->taken;
    for (int r = 0; ok && r < n_regions; r++) {
        p->stride[r] = round_up_64(region_bytes[r] ? region_bytes[r] : 1);
        if (p->stride[r] > ((size_t)-1) / (size_t)n_slots) {
            ok = 0;
            break;
        }
        p->base[r] = aligned_alloc(64, p->stride[r] * (size_t)n_slots);
        ok = p->base[r] != NULL;
    }
    if (!ok) {
        es_slot_pool_free(p);
        return NULL;
    }
    /* push in reverse so that slot 0 is handed out first */
    for (int i = n_slots - 1; i >= 0; i--)
        p->free_stack[p->n_free++] = i;
    return p;
}

void es_slot_pool_free(es_slot_pool *p)
{
    if (!p)
        return;
    for (int r = 0; r < ES_POOL_MAX_REGIONS; r++)
        free(p->base[r]);
    free(p->free_stack);
    free(p->taken);
    free(p);
}

void es_slot_clear(es_slot_pool *p, int slot)
{
    if (slot < 0 || slot >= p->n_slots)
        return;
    for (int r = 0; r < p->n_regions; r++)
        memset(p->base[r] + p->stride[r] * (size_t)slot, 0, p->stride[r]);
}

int es_slot_acquire(es_slot_pool *p)
{
    if (p->n_free == 0)
        return -1;
    int slot = p->free_stack[--p->n_free];
    p->taken[slot] = 1;
    p->in_use++;
    es_slot_clear(p, slot);
    return slot;
}

void es_slot_release(es_slot_pool *p, int slot)
{
    if (slot < 0 || slot >= p->n_slots || !p->taken[slot])
        return;
    p->taken[slot] = 0;
    p->in_use--;
    p->free_stack[p->n_free++] = slot;
}

void *es_slot_region(const es_slot_pool *p, int slot, int region)
{
    return p->base[region] + p->stride[region] * (size_t)slot;
}

int es_slot_pool_capacity(const es_slot_pool *p)
{
    return p->n_slots;
}

int es_slot_pool_in_use(const es_slot_pool *p)
{
    return p->in_use;
}

size_t es_slot_pool_bytes_per_slot(const es_slot_pool *p)
{
    size_t total = 0;
    for (int r = 0; r < p->n_regions; r++)
        total += p->stride[r];
    return total;
}
