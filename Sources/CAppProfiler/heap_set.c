// The live-heap set: the addresses of sampled allocations that have not been
// freed yet, each with the id of its sample (cap_sample_header.heap_id).
//
// A lock-free open-addressing table (linear probing, tombstones). The
// wrappers insert a sampled allocation's address (rare: the recording path);
// the `free` wrapper and `realloc` look every freed address up (often: a
// couple of loads when the address was not sampled, see cap_heap_forget in
// alloc_internal.h) and retire a hit. The drain thread rebuilds the table
// when its tombstones pile up or its live entries outgrow it, and reads the
// live ids for in-use profiles.
//
// Memory: one mapping of two sides of CAP_HEAP_MAX_ENTRIES entries (16 bytes
// each, 8 MiB in all, reserved without backing), made at the first start and
// never unmapped, so a thread still probing a table that was replaced reads
// mapped memory (at worst stale entries, never a fault). Only touched pages
// are resident: a table of 4,096 entries is 64 KiB. Tables grow to keep at
// most an eighth of their entries live; an insert that would fill more than
// half of the largest is refused (CAP_HEAP_MAX_ENTRIES / 2 = 131,072 sampled
// allocations alive at once, 64 GiB of heap at the default 512 KiB rate),
// counted in `untracked` and left out of in-use figures.
//
// This file is the part that runs inside the allocation wrappers (signal
// path rules: no locks, no allocation); heap_linux.c the rest.
//
// Rebuild protocol (drain thread only): inserts stop (`rebuilding`), the
// writers in flight are waited for, live entries are copied to the other
// side, the new table is published, writers are waited for again, and every
// copied entry whose address was retired from the old table meanwhile is
// retired from the new one. A free that hits after the publication retires
// the address from both tables (see cap_heap_forget_hit).
#define _GNU_SOURCE
#include "cap_platform.h"
#if CAP_HAVE_SAMPLER
#include "alloc_internal.h"

#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

_Atomic(cap_heap_table *) cap_heap_current;
_Atomic uint64_t cap_heap_word;
cap_heap_table cap_heap_tables[2];
_Atomic uint32_t cap_heap_writers;
_Atomic uint32_t cap_heap_rebuilding;
_Atomic uint64_t cap_heap_next_id = 1;
_Atomic uint64_t cap_heap_untracked;
_Atomic uint64_t cap_heap_retired;

/// Claims a slot for `address` (or finds it there: an address freed where
/// no wrapper saw it, now allocated again). Returns 0 when the table is full
/// (three quarters of its slots used: the drain thread grows it long before).
int cap_heap_put(cap_heap_table *t, uint64_t address, uint64_t id) {
  uint64_t capacity = t->mask + 1;
  uint64_t start = cap_heap_hash(t, address);
  uint64_t tomb = UINT64_MAX;
  for (uint64_t n = 0; n <= t->mask; n++) {
    uint64_t i = (start + n) & t->mask;
    uint64_t key = atomic_load_explicit(&t->entries[i].key, memory_order_acquire);
    if (key == address) {
      atomic_store_explicit(&t->entries[i].id, id, memory_order_release);
      return 1;
    }
    if (key == CAP_HEAP_TOMB && tomb == UINT64_MAX) tomb = i;
    if (key != 0) continue;
    // The address is not in the table: take the first tombstone on its path,
    // else this empty slot.
    if (tomb != UINT64_MAX) {
      uint64_t expected = CAP_HEAP_TOMB;
      if (atomic_compare_exchange_strong(&t->entries[tomb].key, &expected, address)) {
        atomic_store_explicit(&t->entries[tomb].id, id, memory_order_release);
        atomic_fetch_add_explicit(&t->live, 1, memory_order_relaxed);
        return 1;
      }
    }
    if (atomic_load_explicit(&t->used, memory_order_relaxed) >= capacity / 4 * 3) return 0;
    uint64_t expected = 0;
    if (atomic_compare_exchange_strong(&t->entries[i].key, &expected, address)) {
      atomic_store_explicit(&t->entries[i].id, id, memory_order_release);
      atomic_fetch_add_explicit(&t->used, 1, memory_order_relaxed);
      atomic_fetch_add_explicit(&t->live, 1, memory_order_relaxed);
      return 1;
    }
    // Lost the slot to another insert: go on probing.
  }
  return 0;
}

/// Retires `address` from `t` if it is there.
int cap_heap_take(cap_heap_table *t, uint64_t address) {
  uint64_t start = cap_heap_hash(t, address);
  for (uint64_t n = 0; n <= t->mask; n++) {
    uint64_t i = (start + n) & t->mask;
    uint64_t key = atomic_load_explicit(&t->entries[i].key, memory_order_acquire);
    if (key == 0) return 0;
    if (key != address) continue;
    uint64_t expected = address;
    if (atomic_compare_exchange_strong(&t->entries[i].key, &expected, CAP_HEAP_TOMB)) {
      atomic_store_explicit(&t->entries[i].id, 0, memory_order_relaxed);
      atomic_fetch_sub_explicit(&t->live, 1, memory_order_relaxed);
      return 1;
    }
    return 0;
  }
  return 0;
}

uint64_t cap_heap_insert(uint64_t address) {
  // A rebuild takes a few hundred microseconds to a few milliseconds: wait
  // for it (outside the writers' count, which it waits for) up to 20 ms,
  // then give up on this sample.
  for (int attempt = 0; attempt < 200; attempt++) {
    atomic_fetch_add(&cap_heap_writers, 1);
    cap_heap_table *t = atomic_load(&cap_heap_current);
    if (t == 0) {
      atomic_fetch_sub(&cap_heap_writers, 1);
      return 0;
    }
    if (!atomic_load(&cap_heap_rebuilding)) {
      uint64_t id = atomic_fetch_add_explicit(&cap_heap_next_id, 1, memory_order_relaxed);
      if (!cap_heap_put(t, address, id)) id = 0;
      if (id == 0) atomic_fetch_add_explicit(&cap_heap_untracked, 1, memory_order_relaxed);
      atomic_fetch_sub(&cap_heap_writers, 1);
      return id;
    }
    atomic_fetch_sub(&cap_heap_writers, 1);
    struct timespec pause = {0, 100000};
    syscall(SYS_nanosleep, &pause, 0);  // the plain system call (signal-safe)
  }
  atomic_fetch_add_explicit(&cap_heap_untracked, 1, memory_order_relaxed);
  return 0;
}

void cap_heap_forget_hit(uint64_t word, uint64_t address) {
  atomic_fetch_add(&cap_heap_writers, 1);
  cap_heap_entry *entries = (cap_heap_entry *)(uintptr_t)(word & ~(uint64_t)0xFFF);
  cap_heap_table *t = cap_heap_tables[0].entries == entries ? &cap_heap_tables[0] : &cap_heap_tables[1];
  int taken = cap_heap_take(t, address);
  // A rebuild published another table since this thread looked: the
  // address may have been copied there.
  cap_heap_table *now = atomic_load(&cap_heap_current);
  if (now != 0 && now != t) taken |= cap_heap_take(now, address);
  if (taken) atomic_fetch_add_explicit(&cap_heap_retired, 1, memory_order_relaxed);
  atomic_fetch_sub(&cap_heap_writers, 1);
}


#endif  // CAP_HAVE_SAMPLER
