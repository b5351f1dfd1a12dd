// Stack bounds for the signal handler and the allocation hooks: which
// readable+writable mapping holds a stack pointer, from the session's
// double-buffered snapshot of /proc/self/maps. Lock-free; no allocation.
#ifndef CAP_STACK_H
#define CAP_STACK_H

#include "cap_session.h"
#include "unwind_async.h"
#include "unwind_cfi.h"
#include "unwind_fp.h"
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

// The snapshot's ranges are searched as cap_code_range (unwind_async.h).
_Static_assert(sizeof(cap_range) == sizeof(cap_code_range) && offsetof(cap_range, end) == offsetof(cap_code_range, end),
               "cap_range and cap_code_range must have one layout");

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
  const cap_code_range *range = cap_code_ranges_find((const cap_code_range *)set->ranges, cap_ranges_count(set), sp);
  if (range == 0) {
    atomic_store_explicit(&s->ranges_stale, 1, memory_order_relaxed);
    return 0;
  }
  *low = sp;
  *high = range->end;
  return 1;
}

/// What a sample needs besides its stack, from a held snapshot (`set` may
/// be NULL): the async walk over its mappings (for stitching), the running
/// task, and the task's labels, else the thread's. Signal handler and
/// allocation wrappers alike.
static inline void cap_sample_context(const cap_session *s, const cap_range_set *set, cap_async_walk *walk,
                                      uint64_t *task, uint64_t *labels) {
  *task = 0;
  *labels = 0;
  if (set != 0) {
    walk->executors = s->async.executors;
    walk->executor_count = s->async.stitch ? s->async.executor_count : 0;
    walk->memory = (const cap_code_range *)set->ranges;
    walk->memory_count = cap_ranges_count(set);
    walk->images = s->unwind_images;
    walk->image_count = s->unwind_image_count;
    *task = cap_async_current_task(walk, s->async.task_tls_module, s->async.task_tls_offset);
    *labels = cap_async_task_labels(walk, *task, atomic_load_explicit(&cap_labels_key, memory_order_relaxed),
                                    atomic_load_explicit(&cap_labels_head_offset, memory_order_relaxed));
  }
  if (*labels == 0) *labels = cap_thread_labels;
}

/// After the walk: its counters, and a fresh snapshot asked for when a read
/// fell outside this one.
static inline void cap_sample_context_end(cap_session *s, const cap_async_walk *walk) {
  if (walk->stitched) CAP_COUNT(s, async_stitched, 1);
  if (walk->broken) CAP_COUNT(s, async_broken, 1);
  if (walk->missed) atomic_store_explicit(&s->ranges_stale, 1, memory_order_relaxed);
}

/// The one stack walk of the signal handler and the wrappers' recorders:
/// from the registers (pc, sp, fp, and r14 — the Swift async context —
/// where known, else 0) within [low, high), into `frames`. CFI tables when
/// the session has them (x86_64), frame pointers otherwise; `walk` (may be
/// NULL) stitches async callers. Adds CAP_SAMPLE_TRUNCATED and
/// CAP_SAMPLE_COMPLETE to `flags`; counts nothing (cap_sample_finish does).
static inline uint32_t cap_walk_stack(const cap_session *s, uint64_t pc, uint64_t sp, uint64_t fp, uint64_t r14,
                                      cap_async_walk *walk, uint64_t low, uint64_t high, uint64_t *frames,
                                      uint16_t *flags) {
  int truncated = 0;
  uint32_t depth;
#if defined(__x86_64__)
  if (s->unwind_image_count > 0) {
    int complete = 0;
    depth = cap_unwind_cfi(s->unwind_images, s->unwind_image_count, pc, sp, fp, r14,
                           walk != 0 && walk->executor_count > 0 ? walk : 0, low, high, frames, CAP_MAX_DEPTH,
                           &truncated, &complete);
    if (complete) *flags |= CAP_SAMPLE_COMPLETE;
  } else
#endif
  {
    (void)s, (void)sp, (void)r14, (void)walk;
    depth = cap_unwind_fp(pc, fp, low, high, frames, CAP_MAX_DEPTH, &truncated);
  }
  if (truncated) *flags |= CAP_SAMPLE_TRUNCATED;
  return depth;
}

/// A stack of one frame, `pc`, where the stack's bounds are unknown.
static inline uint32_t cap_walk_leaf_only(uint64_t pc, uint64_t *frames, uint16_t *flags) {
  frames[0] = pc;
  *flags |= CAP_SAMPLE_NO_STACK_BOUNDS;
  return 1;
}

/// Fills the header of a walked sample (weight 1, no object, no heap id:
/// the caller sets what its kind adds) and counts a complete stack.
static inline void cap_sample_finish(cap_session *s, cap_slot *slot, int32_t tid, uint32_t depth, uint16_t flags,
                                     uint64_t task, uint64_t labels) {
  if (flags & CAP_SAMPLE_COMPLETE) CAP_COUNT(s, complete_samples, 1);
  slot->header.timestamp_ns = cap_now_ns(CLOCK_MONOTONIC);
  slot->header.weight = 1;
  slot->header.tid = tid;
  slot->header.depth = (uint16_t)depth;
  slot->header.flags = flags;
  slot->header.object_type = 0;
  slot->header.task = task;
  slot->header.labels = labels;
  slot->header.heap_id = 0;
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
