// Stack bounds for the signal handler and the allocation hooks: which
// readable+writable mapping holds a stack pointer, from the session's
// double-buffered snapshot of /proc/self/maps. Lock-free; no allocation.
#ifndef CAP_STACK_H
#define CAP_STACK_H

#include "cap_session.h"
#include <stdatomic.h>
#include <stdint.h>

/// Finds the mapping that holds `sp` in the current snapshot. Returns 1 and
/// the bounds, or 0 (and asks the ticker for a fresh snapshot).
static inline int cap_stack_bounds(cap_session *s, uint64_t sp, uint64_t *low, uint64_t *high) {
  for (int attempt = 0; attempt < 2; attempt++) {
    uint32_t index = atomic_load(&s->current_ranges) & 1;
    cap_range_set *set = &s->range_sets[index];
    atomic_fetch_add(&set->readers, 1);
    if ((atomic_load(&s->current_ranges) & 1) != index) {
      atomic_fetch_sub(&set->readers, 1);
      continue;  // the ticker switched sets under us; look again
    }
    int found = 0;
    uint32_t lo = 0, hi = set->count;
    if (hi > CAP_MAX_RANGES) hi = CAP_MAX_RANGES;
    while (lo < hi) {
      uint32_t mid = lo + (hi - lo) / 2;
      if (set->ranges[mid].end <= sp) {
        lo = mid + 1;
      } else if (set->ranges[mid].start > sp) {
        hi = mid;
      } else {
        *low = sp;
        *high = set->ranges[mid].end;
        found = 1;
        break;
      }
    }
    atomic_fetch_sub(&set->readers, 1);
    if (!found) atomic_store_explicit(&s->ranges_stale, 1, memory_order_relaxed);
    return found;
  }
  return 0;
}

#endif
