// Frame-pointer unwinder, used from the signal handler.
//
// Walks frame records [fp] = caller's fp, [fp + 8] = return address, reading
// only inside [stack_low, stack_high) — the mapping that holds the interrupted
// stack pointer — and only upward (each caller's record at a higher address),
// so a corrupt or reused frame pointer ends the walk instead of faulting.
//
// Code built without frame pointers (Debian's glibc) uses fp as a general
// register; the walk then stops early or skips frames. The CFI unwinder of
// the complete-stacks work replaces this function behind the same signature.
#ifndef CAP_UNWIND_FP_H
#define CAP_UNWIND_FP_H

#include "cap_sanitizer.h"
#include <stdint.h>

/// Writes pc and the return addresses above it into `frames` (leaf first).
/// Returns the number written; sets *truncated when the walk could have
/// gone on past `max_frames`.
CAP_NO_SANITIZE static inline uint32_t cap_unwind_fp(uint64_t pc, uint64_t fp, uint64_t stack_low,
                                     uint64_t stack_high, uint64_t *frames,
                                     uint32_t max_frames, int *truncated) {
  uint32_t depth = 0;
  *truncated = 0;
  if (max_frames == 0) return 0;
  frames[depth++] = pc;
  while (1) {
    if (fp < stack_low || fp > stack_high - 16 || (fp & 7) != 0) break;
    const uint64_t *record = (const uint64_t *)(uintptr_t)fp;
    uint64_t caller_fp = record[0];
    uint64_t return_address = record[1];
    if (return_address < 4096) break;
    if (depth == max_frames) {
      *truncated = 1;
      break;
    }
    frames[depth++] = return_address;
    if (caller_fp <= fp) break;  // stacks grow down: callers sit higher
    fp = caller_fp;
  }
  return depth;
}

#endif
