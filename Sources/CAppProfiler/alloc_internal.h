// What the three parts of the allocation sampler share:
//   alloc_record.c     the wrappers and the recording (runs inside malloc)
//   got_patch_linux.c  pointing GOT entries at the wrappers and back
//   alloc_linux.c      the lifecycle called from Swift
#ifndef CAP_ALLOC_INTERNAL_H
#define CAP_ALLOC_INTERNAL_H

#include "cap_session.h"
#include "got_patch.h"
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/// The allocation sampler's session: ring, stack-bounds snapshot, unwind
/// tables, counters (the wrappers use it as the handler uses its own).
extern cap_session cap_alloc_session;
/// Mean bytes between samples.
extern _Atomic uint64_t cap_alloc_mean;
/// Bumped by each start: threads draw a fresh countdown.
extern _Atomic uint32_t cap_alloc_generation;

extern cap_hook cap_alloc_hooks[];
extern const size_t cap_alloc_hook_count;
/// The allocation wrappers as the GOT walk takes them (alloc_linux.c).
extern cap_hook_set cap_alloc_hook_set;

// MARK: - The live-heap set (heap_set.c)

enum {
  CAP_HEAP_MIN_BITS = 12,
  CAP_HEAP_MAX_BITS = 18,
  CAP_HEAP_MAX_ENTRIES = 1 << CAP_HEAP_MAX_BITS,
};
/// A slot's key: 0 empty, CAP_HEAP_TOMB retired, else a sampled address.
#define CAP_HEAP_TOMB ((uint64_t)1)

typedef struct cap_heap_entry {
  _Atomic uint64_t key;
  _Atomic uint64_t id;  // the sample's heap id (0 while being written)
} cap_heap_entry;

typedef struct cap_heap_table {
  cap_heap_entry *entries;
  uint64_t mask;  // entries - 1
  uint32_t shift; // 64 - log2(entries)
  _Atomic uint64_t used;  // live + tombstones
  _Atomic uint64_t live;
} cap_heap_table;

/// The table in use; 0 while in-use tracking is off.
extern _Atomic(cap_heap_table *) cap_heap_current;
/// The same table for the `free` fast path, in one word: its entries'
/// address (page-aligned) | log2 of its size. 0 while tracking is off.
/// Published after cap_heap_current, cleared before it.
extern _Atomic uint64_t cap_heap_word;
/// The two sides' tables (heap_linux.c sets them up).
extern cap_heap_table cap_heap_tables[2];
extern _Atomic uint32_t cap_heap_writers;     // inserts and hits in flight
extern _Atomic uint32_t cap_heap_rebuilding;  // inserts are refused meanwhile
extern _Atomic uint64_t cap_heap_next_id;
extern _Atomic uint64_t cap_heap_untracked;
extern _Atomic uint64_t cap_heap_retired;
/// Claims a slot of `t` for `address` (or updates its id); 0 when full.
int cap_heap_put(cap_heap_table *t, uint64_t address, uint64_t id);
/// Retires `address` from `t`; 1 when it was there.
int cap_heap_take(cap_heap_table *t, uint64_t address);

static inline uint64_t cap_heap_hash(const cap_heap_table *t, uint64_t address) {
  return (address * 0x9E3779B97F4A7C15ull) >> t->shift;
}

/// Maps the table memory (once) and publishes an empty table sized for the
/// sampling rate. -1 when mmap fails.
int cap_heap_enable(uint64_t mean_bytes);
/// Unpublishes the table and returns its pages; frees are no longer looked up.
void cap_heap_disable(void);
/// Records a sampled allocation; returns its heap id, 0 when not tracked
/// (table full or being rebuilt: counted as untracked).
uint64_t cap_heap_insert(uint64_t address);
/// The slow half of cap_heap_forget: `address` was seen in the table of `word`.
void cap_heap_forget_hit(uint64_t word, uint64_t address);

/// Called for every freed address, before the memory is given back (once
/// given back, another thread may get the same address from malloc and
/// insert it). The common case, an address that was never sampled, costs a
/// load of the table pointer and of one or two slots.
static inline void cap_heap_forget(uint64_t address) {
  uint64_t word = __atomic_load_n((uint64_t *)&cap_heap_word, __ATOMIC_ACQUIRE);
  if (word == 0) return;
  const cap_heap_entry *entries = (const cap_heap_entry *)(uintptr_t)(word & ~(uint64_t)0xFFF);
  uint32_t bits = (uint32_t)(word & 0x3F);
  uint64_t mask = ((uint64_t)1 << bits) - 1;
  uint64_t start = (address * 0x9E3779B97F4A7C15ull) >> (64 - bits);
  for (uint64_t n = 0; n <= mask; n++) {
    uint64_t key = __atomic_load_n((const uint64_t *)&entries[(start + n) & mask].key, __ATOMIC_RELAXED);
    if (__builtin_expect(key == 0, 1)) return;
    if (key == address) {
      cap_heap_forget_hit(word, address);
      return;
    }
  }
}

static inline uint64_t cap_heap_word_of(const cap_heap_table *t) {
  return (uint64_t)(uintptr_t)t->entries | (uint64_t)(64 - t->shift);
}

/// Picks the swift_allocObject wrapper (after the real functions are
/// resolved, before the first redirection; once per process).
void cap_alloc_choose_wrappers(void);
/// The one-wrapper swift_allocObject hook (alloc_record.c).
extern void *const cap_alloc_swift_object_direct;
/// The executable segments of a shared libswiftCore ([start, end), 0 when
/// the runtime is linked into the executable).
extern uint64_t cap_alloc_swift_core_text_start;
extern uint64_t cap_alloc_swift_core_text_end;

/// After fork(): the child's only thread has a new id.
void cap_alloc_thread_forked(void);

/// For a GOT entry of `name` holding the task registry's wrapper
/// (`current`): the registry's pointer to where it goes on, which an
/// allocation profile redirects instead of the entry. NULL otherwise.
uint64_t *cap_task_chain_slot(const char *name, uint64_t current);

#endif
