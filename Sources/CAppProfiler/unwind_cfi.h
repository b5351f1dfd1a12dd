// CFI unwinder for x86_64, used from the signal handler.
//
// The tables are compiled from each image's .eh_frame before the session
// (Swift, UnwindTableBuilder); here the walk is a binary search and
// arithmetic. Every memory read is inside [stack_low, stack_high) — the
// mapping of the interrupted stack — and 8-byte aligned; each step must move
// up the stack. Where an address has no CFI, one frame-pointer step is taken
// (code with frame pointers but no unwind info). A row of kind ROOT (return
// address undefined: _start, clone3) ends the walk as complete.
#ifndef CAP_UNWIND_CFI_H
#define CAP_UNWIND_CFI_H

#include "cap_sanitizer.h"
#include "include/CAppProfiler.h"
#include "unwind_async.h"
#include <stdint.h>

static inline const cap_unwind_rule *cap_unwind_find(const cap_unwind_image *images, uint64_t image_count,
                                                     uint64_t pc) {
  uint64_t lo = 0, hi = image_count;
  const cap_unwind_image *image = 0;
  while (lo < hi) {
    uint64_t mid = lo + (hi - lo) / 2;
    if (images[mid].end <= pc) {
      lo = mid + 1;
    } else if (images[mid].start > pc) {
      hi = mid;
    } else {
      image = &images[mid];
      break;
    }
  }
  if (image == 0 || image->count == 0) return 0;
  // Last row that starts at or before pc (pc - start < 2^32: end - start is).
  uint64_t offset = pc - image->start;
  lo = 0;
  hi = image->count;
  while (lo < hi) {
    uint64_t mid = lo + (hi - lo) / 2;
    if (image->row_pcs[mid] <= offset) lo = mid + 1; else hi = mid;
  }
  if (lo == 0) return 0;
  uint16_t rule = image->row_rules[lo - 1];
  return rule < image->rule_count ? &image->rules[rule] : 0;
}

CAP_NO_SANITIZE static inline int cap_read_stack(uint64_t address, uint64_t low, uint64_t high, uint64_t *value) {
  if (address < low || address > high - 8 || (address & 7) != 0) return 0;
  *value = *(const uint64_t *)(uintptr_t)address;
  return 1;
}

/// x86_64 ucontext_t: uc_mcontext.gregs at byte 40; REG_R14 6, REG_RBP 10, REG_RSP 15, REG_RIP 16.
#define CAP_UCONTEXT_GREGS 40
#define CAP_UCONTEXT_SIZE 936

/// `r14` is the interrupted r14, tracked up the stack through the rows'
/// r14 rules for the async context of a frame without a frame pointer;
/// `async` (may be NULL) turns on stitching of Swift async callers.
CAP_NO_SANITIZE static inline uint32_t cap_unwind_cfi(const cap_unwind_image *images, uint64_t image_count, uint64_t pc,
                                      uint64_t sp, uint64_t fp, uint64_t r14, cap_async_walk *async,
                                      uint64_t stack_low, uint64_t stack_high,
                                      uint64_t *frames, uint32_t max_frames, int *truncated,
                                      int *complete) {
  uint32_t depth = 0;
  int r14_known = 1;
  *truncated = 0;
  *complete = 0;
  if (max_frames == 0) return 0;
  frames[depth++] = pc;
  while (1) {
    // A return address points after the call: look up the call itself.
    uint64_t lookup = depth == 1 ? pc : pc - 1;
    const cap_unwind_rule *row = cap_unwind_find(images, image_count, lookup);
    uint64_t kind = row ? row->kind : CAP_ROW_NONE;
    uint64_t next_pc, next_sp, next_fp = fp, next_r14 = r14;
    int next_r14_known = r14_known;
    if (kind == CAP_ROW_ROOT) {
      *complete = 1;
      break;
    } else if (kind == CAP_ROW_SP || kind == CAP_ROW_FP || kind == CAP_ROW_PLT) {
      uint64_t cfa;
      if (kind == CAP_ROW_PLT) {
        cfa = sp + 8 + (((lookup & 15) >= 11) ? 8 : 0);
      } else {
        cfa = (kind == CAP_ROW_FP ? fp : sp) + (int64_t)row->cfa_offset;
      }
      if (cfa <= sp) break;  // each frame sits above the one it called
      if (!cap_read_stack(cfa - 8, stack_low, stack_high, &next_pc)) break;
      if (row->fp_offset != CAP_FP_SAME) {
        uint64_t slot = cfa + (int64_t)row->fp_offset;
        // A save slot below rsp was already popped (the rule outlives the
        // `pop rbp` of an epilogue until `ret`): rbp holds the caller's value.
        if (slot >= sp && !cap_read_stack(slot, stack_low, stack_high, &next_fp)) break;
      }
      if (row->r14_slot == CAP_R14_UNKNOWN) {
        next_r14_known = 0;
      } else if (row->r14_slot != CAP_R14_SAME) {
        uint64_t slot = cfa + 8 * (int64_t)row->r14_slot;
        if (slot >= sp && !cap_read_stack(slot, stack_low, stack_high, &next_r14)) next_r14_known = 0;
      }
      next_sp = cfa;
    } else if (kind == CAP_ROW_SIGNAL) {
      // __restore_rt: rsp points at the ucontext of the interrupted code.
      uint64_t gregs = sp + CAP_UCONTEXT_GREGS;
      if (sp < stack_low || sp + CAP_UCONTEXT_SIZE > stack_high) break;
      if (!cap_read_stack(gregs + 16 * 8, stack_low, stack_high, &next_pc) ||
          !cap_read_stack(gregs + 15 * 8, stack_low, stack_high, &next_sp) ||
          !cap_read_stack(gregs + 10 * 8, stack_low, stack_high, &next_fp)) {
        break;
      }
      next_r14_known = cap_read_stack(gregs + 6 * 8, stack_low, stack_high, &next_r14);
      if (next_sp < sp) break;
    } else {
      // No CFI for this address: one frame-pointer step.
      if (fp < sp || !cap_read_stack(fp + 8, stack_low, stack_high, &next_pc) ||
          !cap_read_stack(fp, stack_low, stack_high, &next_fp)) {
        break;
      }
      next_sp = fp + 16;
      next_r14_known = 0;  // code without CFI: where r14 went is unknown
    }
    if (next_pc < 4096) break;
    if (async != 0 && cap_code_ranges_contain(async->executors, async->executor_count, next_pc - 1)) {
      // This frame was called by an executor: the running task's async
      // frame. Its context: below its frame pointer when it set one up
      // (CFA from rbp), else in r14.
      uint64_t slot_context = 0;
      int has_slot = kind == CAP_ROW_FP && cap_read_stack(fp - 8, stack_low, stack_high, &slot_context);
      depth = cap_async_stitch(async, pc, has_slot, slot_context, r14_known, r14, frames, depth, max_frames,
                               truncated);
      if (*truncated) break;
    }
    if (depth == max_frames) {
      *truncated = 1;
      break;
    }
    frames[depth++] = next_pc;
    pc = next_pc;
    sp = next_sp;
    fp = next_fp;
    r14 = next_r14;
    r14_known = next_r14_known;
  }
  return depth;
}

#endif
