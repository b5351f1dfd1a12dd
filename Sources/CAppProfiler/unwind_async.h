// Swift async stacks, from the signal handler (docs/async-stacks.md).
//
// After its first suspension an async function runs as a partial function
// called by the executor (swift_job_run -> runJobInEstablishedExecutorContext
// -> the task's resume function); its async callers are on no thread's stack.
// They are in the task's chain of async contexts: each context starts with
// `Parent` (the caller's context) and `ResumeParent` (where the caller goes
// on, an entry of its resume partial function). The CFI walk notices the
// frame called by the executor, finds that frame's context (the slot below
// its frame pointer, or r14, the context register on x86_64) and writes one
// frame per ResumeParent, then `[async]`, then goes on with the executor's
// frames up to the thread's root.
//
// Contexts live on the heap (the task allocator): every read is 8-byte
// aligned and inside a readable+writable mapping of the session's snapshot;
// a bad pointer ends the chain with `[async chain unreadable]`, a cycle too.
#ifndef CAP_UNWIND_ASYNC_H
#define CAP_UNWIND_ASYNC_H

#include "cap_sanitizer.h"
#include "include/CAppProfiler.h"
#include <stdint.h>

/// What an async-aware walk needs and reports. `memory` points into the
/// range set the caller holds for the whole walk.
typedef struct cap_async_walk {
  const cap_code_range *executors;
  uint32_t executor_count;
  uint32_t memory_count;
  const cap_code_range *memory;   // sorted, non-overlapping [start, end)
  const cap_unwind_image *images; // code: where a resume pointer may point
  uint64_t image_count;
  uint64_t cached_start;          // the mapping of the last read (contexts cluster)
  uint64_t cached_end;
  int stitched;                   // out: a chain was written
  int broken;                     // out: it ended at an unreadable context or a cycle
  int missed;                     // out: a memory read fell outside the snapshot
} cap_async_walk;

/// Resumed with its callee's context, an await-resume function's first
/// instructions still hold that context (whose ResumeParent is the function
/// itself): within this many bytes of the entry, step to the parent.
#define CAP_ASYNC_PROLOGUE_BYTES 64

/// The range of `ranges` (sorted, non-overlapping) that holds `address`, or
/// NULL. Also used for the memory snapshot (cap_range has the same layout).
static inline const cap_code_range *cap_code_ranges_find(const cap_code_range *ranges, uint32_t count,
                                                         uint64_t address) {
  uint32_t lo = 0, hi = count;
  while (lo < hi) {
    uint32_t mid = lo + (hi - lo) / 2;
    if (ranges[mid].end <= address) lo = mid + 1;
    else if (ranges[mid].start > address) hi = mid;
    else return &ranges[mid];
  }
  return 0;
}

static inline int cap_code_ranges_contain(const cap_code_range *ranges, uint32_t count, uint64_t address) {
  return cap_code_ranges_find(ranges, count, address) != 0;
}

/// Reads 8 aligned bytes at `address` if a mapping of the snapshot holds them.
CAP_NO_SANITIZE static inline int cap_async_read(cap_async_walk *w, uint64_t address, uint64_t *value) {
  if ((address & 7) != 0 || address < 4096) return 0;
  if (!(address >= w->cached_start && address + 8 <= w->cached_end)) {
    const cap_code_range *range = cap_code_ranges_find(w->memory, w->memory_count, address);
    if (range == 0 || address + 8 > range->end) {
      w->missed = 1;
      return 0;
    }
    w->cached_start = range->start;
    w->cached_end = range->end;
  }
  *value = *(const uint64_t *)(uintptr_t)address;
  return 1;
}

static inline int cap_is_code(const cap_async_walk *w, uint64_t address) {
  uint64_t lo = 0, hi = w->image_count;
  while (lo < hi) {
    uint64_t mid = lo + (hi - lo) / 2;
    if (w->images[mid].end <= address) lo = mid + 1;
    else if (w->images[mid].start > address) hi = mid;
    else return 1;
  }
  return 0;
}

/// Reads a context's Parent and ResumeParent. A context is task-allocator
/// memory (16-byte aligned); its resume pointer is code of a known image.
static inline int cap_async_context(cap_async_walk *w, uint64_t context, uint64_t *parent, uint64_t *resume) {
  if (context == 0 || (context & 15) != 0) return 0;
  if (!cap_async_read(w, context, parent) || !cap_async_read(w, context + 8, resume)) return 0;
  if ((*parent & 15) != 0 || !cap_is_code(w, *resume)) return 0;
  return 1;
}

/// The frame at `frame_pc` was called by an executor. Its context is the
/// slot below its frame pointer (`slot_context`, when it has one) or its r14.
/// Appends the task's async callers and the `[async]` marker to `frames`;
/// returns the new depth. A frame whose candidates are no context at all (a
/// plain job, not a task) gets nothing.
static inline uint32_t cap_async_stitch(cap_async_walk *w, uint64_t frame_pc, int has_slot, uint64_t slot_context,
                                        int r14_known, uint64_t r14, uint64_t *frames, uint32_t depth,
                                        uint32_t max_frames, int *truncated) {
  uint64_t candidates[2];
  int count = 0;
  if (has_slot) candidates[count++] = slot_context;
  if (r14_known) candidates[count++] = r14;
  uint64_t context = 0, parent = 0, resume = 0;
  for (int i = 0; i < count && context == 0; i++) {
    uint64_t candidate = candidates[i];
    if (!cap_async_context(w, candidate, &parent, &resume)) continue;
    if (parent != 0 && resume <= frame_pc && frame_pc - resume < CAP_ASYNC_PROLOGUE_BYTES) {
      candidate = parent;
      if (!cap_async_context(w, candidate, &parent, &resume)) continue;
    }
    context = candidate;
  }
  if (context == 0) return depth;
  w->stitched = 1;
  // Brent's cycle check: compare with a saved context at doubling distances.
  uint64_t saved = context;
  uint32_t power = 1, steps = 0;
  while (parent != 0) {
    if (depth >= max_frames) {
      *truncated = 1;
      return depth;
    }
    frames[depth++] = resume + 1;
    context = parent;
    if (context == saved) {
      w->broken = 1;
      break;
    }
    if (++steps == power) {
      saved = context;
      power <<= 1;
      steps = 0;
    }
    if (!cap_async_context(w, context, &parent, &resume)) {
      w->broken = 1;
      break;
    }
  }
  // parent == 0: the task's first context; its ResumeParent is the runtime's
  // task-completion function, not a caller.
  if (depth >= max_frames) {
    *truncated = 1;
    return depth;
  }
  frames[depth++] = w->broken ? CAP_FRAME_ASYNC_BROKEN : CAP_FRAME_ASYNC;
  return depth;
}

/// The running task: the TLS slot swift_task_getCurrent reads, reached
/// through the thread's dynamic thread vector (glibc: the thread pointer's
/// tcbhead_t holds `dtv`; dtv[-1] is its length, dtv[module] the module's
/// block or -1 when the thread never touched it). Reads only, each checked.
CAP_NO_SANITIZE static inline uint64_t cap_async_current_task(cap_async_walk *w, uint64_t module, uint64_t offset) {
  if (module == 0) return 0;
  uint64_t tp = 0, dtv = 0;
#if defined(__x86_64__)
  __asm__("mov %%fs:0, %0" : "=r"(tp));
  if (!cap_async_read(w, tp + 8, &dtv)) return 0;
#elif defined(__aarch64__)
  __asm__("mrs %0, tpidr_el0" : "=r"(tp));
  if (!cap_async_read(w, tp, &dtv)) return 0;
#else
  return 0;
#endif
  uint64_t length = 0, block = 0, task = 0;
  if (!cap_async_read(w, dtv - 16, &length) || module > length) return 0;
  if (!cap_async_read(w, dtv + module * 16, &block) || block == UINT64_MAX) return 0;
  if (!cap_async_read(w, block + offset, &task)) return 0;
  return task;
}

/// Task-local item (swift/ABI/TaskLocal.h): `next` (low bits: the link
/// kind — on this runtime a parent link is tagged 0b100, so three bits are
/// masked; items are 16-byte aligned), `key` (null in a parent link),
/// `valueType`, the value.
#define CAP_TASK_LOCAL_KEY 8
#define CAP_TASK_LOCAL_VALUE_TYPE 16
#define CAP_TASK_LOCAL_VALUE 24
/// Items followed per sample at most (own bindings, then the parents').
#define CAP_TASK_LOCAL_MAX_ITEMS 64

/// The label set id of `task`: the value bound to `key` in its task-local
/// chain (its own bindings, then through parent links the bindings of the
/// tasks it was created in), a label-set box whose first stored property
/// (byte 16, after the object header) is the id. 0 when none or unreadable.
static inline uint64_t cap_async_task_labels(cap_async_walk *w, uint64_t task, uint64_t key, uint64_t head_offset) {
  if (task == 0 || key == 0 || head_offset == 0) return 0;
  uint64_t item = 0;
  if (!cap_async_read(w, task + head_offset, &item)) return 0;
  for (int i = 0; i < CAP_TASK_LOCAL_MAX_ITEMS; i++) {
    item &= ~(uint64_t)7;
    if (item == 0) return 0;
    uint64_t item_key = 0, value_type = 0, next = 0;
    if (!cap_async_read(w, item + CAP_TASK_LOCAL_KEY, &item_key) ||
        !cap_async_read(w, item + CAP_TASK_LOCAL_VALUE_TYPE, &value_type)) {
      return 0;
    }
    if (item_key == key && value_type != 0) {
      uint64_t box = 0, id = 0;
      if (!cap_async_read(w, item + CAP_TASK_LOCAL_VALUE, &box) || box == 0) return 0;  // bound to nil
      if (!cap_async_read(w, box + 16, &id)) return 0;
      return id;
    }
    if (!cap_async_read(w, item, &next)) return 0;
    item = next;
  }
  return 0;
}

#endif
