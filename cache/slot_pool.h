/*
 * slot_pool.h - the session-state pool: fixed-size slots holding each live stream's state.
 *
 * A pool is created for a fixed number of slots and a fixed list of regions (for the encoder:
 * attention cache, convolution cache, lengths; for the decoder: its carried state). Each region
 * is one contiguous array of [n_slots][region_bytes], so a batched step addresses a stream's
 * state as base + slot * stride, with no gather or scatter copies, and a device backend can
 * mirror the same layout. Slots are zeroed when acquired, which is the state a new stream
 * starts from. The pool knows nothing about what the bytes mean: that is the engine's business.
 *
 * Not thread-safe: one owner (the engine) acquires and releases slots.
 */
#ifndef EARSHOT_SLOT_POOL_H
#define EARSHOT_SLOT_POOL_H

#include <stddef.h>

#define ES_POOL_MAX_REGIONS 8

typedef struct es_slot_pool es_slot_pool;

/* region_bytes[i] is the size of region i in one slot; each is rounded up to 64 bytes.
   Returns NULL if n_slots < 1, n_regions is out of range, or memory is short. */
es_slot_pool *es_slot_pool_create(int n_slots, const size_t *region_bytes, int n_regions);
void es_slot_pool_free(es_slot_pool *pool);

/* Takes a free slot (lowest index first) and zeroes it; returns -1 when every slot is taken. */
int es_slot_acquire(es_slot_pool *pool);
/* Returns a slot to the pool; releasing a free or out-of-range slot is ignored. */
void es_slot_release(es_slot_pool *pool, int slot);
/* Zeroes a taken slot, as if newly acquired. */
void es_slot_clear(es_slot_pool *pool, int slot);

/* The start of region `region` of `slot`. */
void *es_slot_region(const es_slot_pool *pool, int slot, int region);

int es_slot_pool_capacity(const es_slot_pool *pool);
int es_slot_pool_in_use(const es_slot_pool *pool);
/* Bytes one slot occupies over all regions (for admission control and metrics). */
size_t es_slot_pool_bytes_per_slot(const es_slot_pool *pool);

#endif
