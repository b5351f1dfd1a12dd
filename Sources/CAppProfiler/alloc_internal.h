// What the three parts of the allocation sampler share:
//   alloc_record.c     the wrappers and the recording (runs inside malloc)
//   got_patch_linux.c  pointing GOT entries at the wrappers and back
//   alloc_linux.c      the lifecycle called from Swift
#ifndef CAP_ALLOC_INTERNAL_H
#define CAP_ALLOC_INTERNAL_H

#include "cap_session.h"
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

/// A wrapper and where the real function's address is kept (resolved with
/// dlsym before any GOT entry points at the wrapper).
typedef struct cap_hook {
  const char *name;
  void *hook;
  void **real;
} cap_hook;
extern cap_hook cap_alloc_hooks[];
extern const size_t cap_alloc_hook_count;

/// After fork(): the child's only thread has a new id.
void cap_alloc_thread_forked(void);

// got_patch_linux.c (callers hold the patch lock)
enum { CAP_WALK_PATCH = 1, CAP_WALK_RESTORE = 2, CAP_WALK_COUNT = 3 };
typedef struct cap_got_result {
  uint64_t changed;  // entries written (patch, restore) or found (count)
  uint64_t images;   // images with at least one entry changed
  int error;
} cap_got_result;
/// Bytes of the table of patched entries (kept in the session's memory).
size_t cap_got_table_bytes(void);
void cap_got_set_table(void *memory);
/// Walks every loaded image's relocations (dl_iterate_phdr) for `action`.
cap_got_result cap_got_walk(int action);
void cap_got_resolve_real_functions(void);

#endif
