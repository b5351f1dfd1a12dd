// Stack bounds for the signal handler and the allocation hooks: which
// readable+writable mapping holds a stack pointer, from the session's
// double-buffered snapshot of /proc/self/maps. Lock-free; no allocation.
#ifndef CAP_STACK_H
#define CAP_STACK_H

#include "cap_session.h"
#include <stdatomic.h>
#include <stdint.h>

/// Takes a reader's hold on the current snapshot: it is not rewritten until
/// cap_ranges_release. NULL only if the ticker switched sets twice meanwhile.
static inline cap_range_set *cap_ranges_hold(cap_session *s) {
  for (int attempt = 0; attempt < 2; attempt++) {
    uint32_t index = atomic_load(&s->current_ranges) & 1;
    cap_range_set *set = &s->range_sets[index];
    atomic_fetch_add(&set->readers, 1);
    if ((atomic_load(&s->current_ranges) & 1) == index) return set;
    atomic_fetch_sub(&set->readers, 1);  // the ticker switched sets under us; look again
  }
  return 0;
}

static inline void cap_ranges_release(cap_range_set *set) {
  if (set != 0) atomic_fetch_sub(&set->readers, 1);
}

static inline uint32_t cap_ranges_count(const cap_range_set *set) {
  return set->count > CAP_MAX_RANGES ? CAP_MAX_RANGES : set->count;
}

/// The mapping of a held snapshot that holds `sp`: 1 and [sp, end), or 0
/// (and asks the ticker for a fresh snapshot).
static inline int cap_ranges_find_stack(cap_session *s, const cap_range_set *set, uint64_t sp, uint64_t *low,
                                        uint64_t *high) {
  uint32_t lo = 0, hi = cap_ranges_count(set);
  while (lo < hi) {
    uint32_t mid = lo + (hi - lo) / 2;
    if (set->ranges[mid].end <= sp) {
      lo = mid + 1;
    } else if (set->ranges[mid].start > sp) {
      hi = mid;
    } else {
      *low = sp;
      *high = set->ranges[mid].end;
      return 1;
    }
  }
  atomic_store_explicit(&s->ranges_stale, 1, memory_order_relaxed);
  return 0;
}

/// Finds the mapping that holds `sp` in the current snapshot. Returns 1 and
/// the bounds, or 0 (and asks the ticker for a fresh snapshot).
static inline int cap_stack_bounds(cap_session *s, uint64_t sp, uint64_t *low, uint64_t *high) {
  cap_range_set *set = cap_ranges_hold(s);
  if (set == 0) return 0;
  int found = cap_ranges_find_stack(s, set, sp, low, high);
  cap_ranges_release(set);
  return found;
}

#endif
