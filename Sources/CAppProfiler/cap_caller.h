// The stack of the code that called a wrapper (the allocation and lock
// samplers' wrappers run on the app's threads, outside any signal): walked
// into a ring slot of the sampler's session. Follows the signal handler's
// rules (no locks, no allocation, async-signal-safe calls only).
#ifndef CAP_CALLER_H
#define CAP_CALLER_H

#include "cap_session.h"
#include <stdint.h>

/// Where the calling thread's stack was found last (a thread's stack never
/// moves); kept by each wrapper family in its thread-local state.
typedef struct cap_stack_cache {
  uint64_t start;
  uint64_t end;
  int32_t tid;  // cached: a thread's id never changes (reset after fork)
} cap_stack_cache;

/// Fills `slot`'s frames, depth, flags, task and labels with the stack of
/// the code that called a wrapper: `frame` is the wrapper's frame record
/// ([frame] = the caller's frame pointer, [frame + 8] = the return address
/// into the caller, which becomes the leaf). Frames in [drop_start,
/// drop_end) right above it (a runtime's allocation entry points) are
/// dropped too. Also sets the header's tid and timestamp.
void cap_capture_caller(cap_session *s, cap_stack_cache *cache, uint64_t frame, uint64_t drop_start,
                        uint64_t drop_end, cap_slot *slot);

#endif
