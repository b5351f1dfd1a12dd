// The live-heap set's lifecycle and maintenance (drain thread, off the
// allocation path): mapping, rebuilds, reading the live ids. See heap_set.c.
#define _GNU_SOURCE
#include "cap_platform.h"
#if CAP_HAVE_SAMPLER
#include "alloc_internal.h"

#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define CAP_HEAP_SIDE_BYTES ((size_t)CAP_HEAP_MAX_ENTRIES * sizeof(cap_heap_entry))

static int g_side;  // side of the current table (drain thread)
static size_t g_side_bytes[2];  // bytes of each side written since its pages were last returned
static void *g_memory;
static _Atomic uint64_t g_rebuilds;

/// Waits until no insert or retire is in flight, at most `limit_us`
/// (a thread stopped in a debugger mid-retire must not hang the drain
/// thread). Returns 1 when none is.
static int cap_heap_wait_writers(uint64_t limit_us) {
  for (uint64_t waited = 0; atomic_load(&cap_heap_writers) != 0; waited += 20) {
    if (waited >= limit_us) return 0;
    struct timespec pause = {0, 20000};
    nanosleep(&pause, 0);
  }
  return 1;
}

static void cap_heap_table_init(cap_heap_table *t, int side, uint32_t bits) {
  t->entries = (cap_heap_entry *)((char *)g_memory + (size_t)side * CAP_HEAP_SIDE_BYTES);
  t->mask = ((uint64_t)1 << bits) - 1;
  t->shift = 64 - bits;
  atomic_store(&t->used, 0);
  atomic_store(&t->live, 0);
}

static uint32_t g_min_bits = CAP_HEAP_MIN_BITS;

int cap_heap_enable(uint64_t mean_bytes) {
  if (g_memory == 0) {
    void *memory = mmap(0, 2 * CAP_HEAP_SIDE_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                        -1, 0);
    if (memory == MAP_FAILED) return -1;
    g_memory = memory;
  }
  if (atomic_load(&cap_heap_current) != 0) return 0;
  // Room for the samples of 80 MiB of allocations (a burst the drain
  // thread's next rebuild, 20 ms later, may have to absorb): 4,096 entries
  // at the default rate, more at small rates.
  uint64_t burst = mean_bytes > 0 ? ((uint64_t)80 << 20) / mean_bytes : 0;
  g_min_bits = CAP_HEAP_MIN_BITS;
  while (g_min_bits < CAP_HEAP_MAX_BITS && ((uint64_t)1 << g_min_bits) < burst) g_min_bits++;
  g_side = 0;
  // Zero (a child after fork() inherits the parent's entries).
  madvise(g_memory, CAP_HEAP_SIDE_BYTES, MADV_DONTNEED);
  g_side_bytes[0] = 0;
  cap_heap_table_init(&cap_heap_tables[0], 0, g_min_bits);
  atomic_store(&cap_heap_current, &cap_heap_tables[0]);
  atomic_store(&cap_heap_word, cap_heap_word_of(&cap_heap_tables[0]));
  return 0;
}

void cap_heap_disable(void) {
  if (atomic_load(&cap_heap_current) == 0) return;
  atomic_store(&cap_heap_word, 0);
  atomic_store(&cap_heap_current, (cap_heap_table *)0);
  cap_heap_wait_writers(1000000);
  // Probes still running read zeros: not found. The pages go back.
  madvise(g_memory, 2 * CAP_HEAP_SIDE_BYTES, MADV_DONTNEED);
  g_side_bytes[0] = g_side_bytes[1] = 0;
}

static uint32_t cap_heap_bits_for(uint64_t live) {
  uint32_t bits = g_min_bits;
  while (bits < CAP_HEAP_MAX_BITS && ((uint64_t)1 << bits) < live * 8) bits++;
  return bits;
}

int cap_heap_maintain(void) {
  cap_heap_table *old = atomic_load(&cap_heap_current);
  if (old == 0) return 0;
  uint64_t capacity = old->mask + 1;
  uint64_t used = atomic_load(&old->used);
  uint64_t live = atomic_load(&old->live);
  uint32_t old_bits = 64 - old->shift;
  uint32_t bits = cap_heap_bits_for(live);
  // Growing: leave room for as much again before the next rebuild.
  if (bits > old_bits) bits = cap_heap_bits_for(live * 2);
  // Rebuild when tombstones fill a third of it, or it should be larger
  // (live > 1/8), or much smaller.
  // (Tombstones only: a full table of live entries cannot be helped.)
  int crowded = used * 3 > capacity && (used - live) * 6 > capacity;
  if (!crowded && bits == old_bits) return 0;
  if (!crowded && bits < old_bits && bits + 2 > old_bits) return 0;

  atomic_store(&cap_heap_rebuilding, 1);
  if (!cap_heap_wait_writers(100000)) {
    // A writer stuck (stopped thread): try again later.
    atomic_store(&cap_heap_rebuilding, 0);
    return 0;
  }
  int side = 1 - g_side;
  cap_heap_table *fresh = &cap_heap_tables[side];
  char *side_memory = (char *)g_memory + (size_t)side * CAP_HEAP_SIDE_BYTES;
  // Zero what the new table uses (its pages stay: a rebuild is frequent
  // under churn, page faults would make it slow); return what lies beyond.
  size_t table_bytes = ((size_t)1 << bits) * sizeof(cap_heap_entry);
  memset(side_memory, 0, table_bytes);
  if (g_side_bytes[side] > table_bytes) {
    madvise(side_memory + table_bytes, CAP_HEAP_SIDE_BYTES - table_bytes, MADV_DONTNEED);
  }
  g_side_bytes[side] = table_bytes;
  cap_heap_table_init(fresh, side, bits);
  for (uint64_t i = 0; i <= old->mask; i++) {
    uint64_t key = atomic_load(&old->entries[i].key);
    if (key == 0 || key == CAP_HEAP_TOMB) continue;
    uint64_t id = atomic_load(&old->entries[i].id);
    if (id != 0) cap_heap_put(fresh, key, id);
  }
  atomic_store(&cap_heap_current, fresh);
  atomic_store(&cap_heap_word, cap_heap_word_of(fresh));
  g_side = side;
  // Retires in flight finish on the old table (reconciled below); after
  // 1 s a straggler may leave one stale entry.
  cap_heap_wait_writers(1000000);
  // Frees that retired an address from the old table only.
  for (uint64_t i = 0; i <= fresh->mask; i++) {
    uint64_t key = atomic_load(&fresh->entries[i].key);
    if (key == 0 || key == CAP_HEAP_TOMB) continue;
    uint64_t start = cap_heap_hash(old, key);
    int present = 0;
    for (uint64_t n = 0; n <= old->mask; n++) {
      uint64_t probe = atomic_load(&old->entries[(start + n) & old->mask].key);
      if (probe == key) {
        present = 1;
        break;
      }
      if (probe == 0) break;
    }
    if (!present) cap_heap_take(fresh, key);
  }
  atomic_store(&cap_heap_rebuilding, 0);
  atomic_fetch_add(&g_rebuilds, 1);
  return 1;
}

size_t cap_heap_live_ids(uint64_t *out, size_t capacity, uint64_t *next_id) {
  *next_id = atomic_load(&cap_heap_next_id);
  cap_heap_table *t = atomic_load(&cap_heap_current);
  if (t == 0) return 0;
  size_t count = 0;
  for (uint64_t i = 0; i <= t->mask && count < capacity; i++) {
    uint64_t key = atomic_load_explicit(&t->entries[i].key, memory_order_acquire);
    if (key == 0 || key == CAP_HEAP_TOMB) continue;
    uint64_t id = atomic_load_explicit(&t->entries[i].id, memory_order_acquire);
    if (id != 0) out[count++] = id;
  }
  return count;
}

void cap_heap_stats_get(cap_heap_stats *out) {
  memset(out, 0, sizeof *out);
  cap_heap_table *t = atomic_load(&cap_heap_current);
  if (t != 0) {
    out->capacity = t->mask + 1;
    out->live = atomic_load(&t->live);
    out->used = atomic_load(&t->used);
  }
  out->untracked = atomic_load(&cap_heap_untracked);
  out->retired = atomic_load(&cap_heap_retired);
  out->rebuilds = atomic_load(&g_rebuilds);
  out->max_live = CAP_HEAP_MAX_ENTRIES / 2;
  out->reserved_bytes = 2 * CAP_HEAP_SIDE_BYTES;
}

#endif  // CAP_HAVE_SAMPLER
