// Redirecting GOT entries to wrappers and back (got_patch_linux.c), for the
// allocation sampler (alloc_record.c) and the lock sampler (lock_record.c).
#ifndef CAP_GOT_PATCH_H
#define CAP_GOT_PATCH_H

#include <stddef.h>
#include <stdint.h>

/// A wrapper and where the real function's address is kept (resolved with
/// dlsym before any GOT entry points at the wrapper).
typedef struct cap_hook {
  const char *name;
  void *hook;
  void **real;
} cap_hook;

/// An entry written by a walk, and what it held before.
typedef struct cap_patch {
  uint64_t *slot;
  uint64_t original;
} cap_patch;

/// The wrappers of one sampler and the entries it redirected.
typedef struct cap_hook_set {
  cap_hook *hooks;
  size_t count;
  cap_patch *patches;       // cap_got_set_table
  uint32_t patch_count;
  uint32_t patch_capacity;
  int follows_task_registry;  // redirect the task registry's onward pointers instead of its entries
} cap_hook_set;

enum { CAP_WALK_PATCH = 1, CAP_WALK_RESTORE = 2, CAP_WALK_COUNT = 3 };
typedef struct cap_got_result {
  uint64_t changed;  // entries written (patch, restore) or found (count)
  uint64_t images;   // images with at least one entry changed
  int error;
} cap_got_result;

/// Bytes of a table of patched entries big enough for any process (8,192).
size_t cap_got_table_bytes(void);
void cap_got_set_table(cap_hook_set *set, void *memory, uint32_t capacity);
/// Walks every loaded image's relocations (dl_iterate_phdr) for `action`
/// on `set`'s functions. Callers hold their sampler's patch lock.
cap_got_result cap_got_walk(cap_hook_set *set, int action);
/// Looks up each wrapped function's real address (dlsym) where not known yet.
void cap_got_resolve(cap_hook_set *set);

#endif
