// The stack of the code that called a wrapper: see cap_caller.h.
#define _GNU_SOURCE
#include "cap_platform.h"
#if CAP_HAVE_SAMPLER
#include "cap_caller.h"
#include "cap_stack.h"
#include "unwind_cfi.h"
#include "unwind_fp.h"

#include <fcntl.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int cap_parse_hex(const char **cursor, const char *end, uint64_t *value) {
  uint64_t result = 0;
  int digits = 0;
  const char *p = *cursor;
  while (p < end) {
    char c = *p;
    uint64_t digit;
    if (c >= '0' && c <= '9') digit = (uint64_t)(c - '0');
    else if (c >= 'a' && c <= 'f') digit = (uint64_t)(c - 'a' + 10);
    else break;
    result = (result << 4) | digit;
    digits++;
    p++;
  }
  *cursor = p;
  *value = result;
  return digits > 0;
}

/// The readable+writable mapping that holds `sp`, read from /proc/self/maps
/// with a buffer on the stack (no allocation: this runs inside malloc). For a
/// thread started after the session's snapshot; once per thread, then cached.
static int cap_find_stack_mapping(uint64_t sp, uint64_t *start, uint64_t *end) {
  int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buffer[4096];
  size_t kept = 0;
  int found = 0;
  while (!found) {
    ssize_t n = read(fd, buffer + kept, sizeof buffer - kept);
    if (n <= 0) break;
    size_t filled = kept + (size_t)n;
    size_t line_start = 0;
    for (size_t i = 0; i < filled; i++) {
      if (buffer[i] != '\n') continue;
      const char *cursor = buffer + line_start;
      const char *line_end = buffer + i;
      uint64_t low = 0, high = 0;
      if (cap_parse_hex(&cursor, line_end, &low) && cursor < line_end && *cursor == '-') {
        cursor++;
        if (cap_parse_hex(&cursor, line_end, &high) && line_end - cursor >= 3 && cursor[1] == 'r' &&
            cursor[2] == 'w' && sp >= low && sp < high) {
          *start = low;
          *end = high;
          found = 1;
          break;
        }
      }
      line_start = i + 1;
    }
    if (found) break;
    kept = filled - line_start;
    if (kept == sizeof buffer) kept = 0;  // a line longer than the buffer: skip it
    memmove(buffer, buffer + line_start, kept);
  }
  close(fd);
  return found;
}

/// Bounds of the calling thread's stack above `sp`: the thread's cached
/// mapping, else the session's snapshot, else /proc/self/maps.
static int cap_caller_stack_bounds(cap_stack_cache *t, cap_session *s, uint64_t sp, uint64_t *low,
                                   uint64_t *high) {
  if (sp >= t->start && sp < t->end) {
    *low = sp;
    *high = t->end;
    return 1;
  }
  if (cap_stack_bounds(s, sp, low, high)) {
    t->start = sp;
    t->end = *high;
    return 1;
  }
  uint64_t start = 0, end = 0;
  if (!cap_find_stack_mapping(sp, &start, &end)) return 0;
  t->start = start;
  t->end = end;
  *low = sp;
  *high = end;
  return 1;
}

/// With CFI tables the walk starts here, at this function's own registers,
/// so that r14 (the Swift async context of a frameless partial function
/// that called a wrapper) is tracked through the wrapper's frames like
/// everything else; the profiler's frames are then dropped up to the
/// wrapper's return address.
__attribute__((noinline)) void cap_capture_caller(cap_session *s, cap_stack_cache *cache, uint64_t frame,
                                                  uint64_t drop_start, uint64_t drop_end, cap_slot *slot) {
  (void)drop_start, (void)drop_end;  // used by the CFI walk (x86_64) only
  const uint64_t *record = (const uint64_t *)(uintptr_t)frame;
  uint64_t pc = record[1];
  uint64_t fp = record[0];
  uint64_t sp = frame + 16;
  uint16_t flags = 0;
  uint64_t low = 0, high = 0;
  uint32_t depth = 0;
  int walked = 0;
  cap_range_set *set = cap_ranges_hold(s);
  cap_async_walk walk = {0};
  uint64_t task = 0, labels = 0;
  cap_sample_context(s, set, &walk, &task, &labels);
#if defined(__x86_64__)
  if (s->unwind_image_count > 0) {
    uint64_t here_pc, here_sp, here_fp, here_r14;
    __asm__ volatile("lea 0(%%rip), %0\n\tmov %%rsp, %1\n\tmov %%rbp, %2\n\tmov %%r14, %3"
                     : "=&r"(here_pc), "=&r"(here_sp), "=&r"(here_fp), "=&r"(here_r14));
    if (cap_caller_stack_bounds(cache, s, here_sp, &low, &high)) {
      uint16_t here_flags = 0;
      depth = cap_walk_stack(s, here_pc, here_sp, here_fp, here_r14, &walk, low, high, slot->frames, &here_flags);
      uint32_t skip = 0;
      while (skip < depth && skip < 8 && slot->frames[skip] != pc) skip++;
      if (skip < depth && slot->frames[skip] == pc) {
        // A runtime's entry points met on the way (a Swift object's
        // allocation: swift_slowAlloc, swift_allocObject) go too.
        while (skip + 1 < depth && slot->frames[skip] >= drop_start && slot->frames[skip] < drop_end) skip++;
        for (uint32_t i = skip; i < depth; i++) slot->frames[i - skip] = slot->frames[i];
        depth -= skip;
        walked = 1;
        flags = here_flags;
      } else {
        walk.stitched = walk.broken = 0;
      }
    }
  }
#endif
  if (!walked) {
    if (cap_caller_stack_bounds(cache, s, sp, &low, &high)) {
      // From the wrapper's frame record: no r14 and no async stitching.
      depth = cap_walk_stack(s, pc, sp, fp, 0, 0, low, high, slot->frames, &flags);
    } else {
      depth = cap_walk_leaf_only(pc, slot->frames, &flags);
    }
  }
  cap_ranges_release(set);
  cap_sample_context_end(s, &walk);
  if (cache->tid == 0) cache->tid = (int32_t)syscall(SYS_gettid);
  cap_sample_finish(s, slot, cache->tid, depth, flags, task, labels);
}

#endif  // CAP_HAVE_SAMPLER
