// The lifecycle shared by the samplers whose wrappers are put in GOT entries
// (allocation: alloc_linux.c, locks: lock_linux.c): the session's memory
// (stack-bounds snapshots, the table of redirected entries, the ring),
// redirecting and restoring the entries, waiting for wrappers still
// recording, draining. Called from Swift, off the wrapped paths.
#ifndef CAP_WRAPPED_SAMPLER_H
#define CAP_WRAPPED_SAMPLER_H

#include "cap_session.h"
#include "got_patch.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct cap_wrapped {
  cap_session *session;
  cap_hook_set *hooks;
  const char *name;          // "allocation", "lock": for messages
  _Atomic int owned;         // between claim and release
  _Atomic int installed;     // entries redirected
  void *memory;
  size_t bytes;
  pthread_mutex_t patch_lock;
  uint64_t patched_images;
  uint64_t patched_slots;    // entries redirected by the last install (kept after stop)
} cap_wrapped;

#define CAP_WRAPPED_INIT(session_, hooks_, name_) \
  {(session_), (hooks_), (name_), 0, 0, 0, 0, PTHREAD_MUTEX_INITIALIZER, 0, 0}

/// Takes the sampler (-EBUSY while it runs) and maps its memory, the
/// session's fields reset; on failure it is free again.
int cap_wrapped_open(cap_wrapped *w, const cap_wrapper_config *config, char *message, size_t message_len);
/// Redirects every loaded image's entries (the session must be active);
/// on failure they are written back and the error returned.
int cap_wrapped_install(cap_wrapped *w, char *message, size_t message_len);
/// Entries of images loaded since the last call (dlopen).
int cap_wrapped_patch_new_images(cap_wrapped *w);
/// Writes the entries back, then waits until no wrapper is recording.
void cap_wrapped_stop(cap_wrapped *w);
/// Unmaps the memory and frees the sampler (after cap_wrapped_stop).
void cap_wrapped_close(cap_wrapped *w);
/// A forked child: entries written back, nothing recorded (no waiting: the
/// parent's other threads do not exist there).
void cap_wrapped_forked(cap_wrapped *w);
/// Refreshes a stale stack-bounds snapshot (`ignore` keeps the calling
/// thread's own reads of /proc out of the samples), then drains.
size_t cap_wrapped_drain(cap_wrapped *w, void *out, size_t capacity, int full_scan, int (*ignore)(int));
/// Entries pointing at a wrapper now.
int cap_wrapped_count(cap_wrapped *w);

#endif
