// The lock sampler's lifecycle (start, stop, drain, counters). The wrappers
// are in lock_record.c; the session's memory and the GOT redirection are
// shared with the allocation sampler (wrapped_sampler.c): nothing is
// intercepted outside a session, entries are written back at stop, a forked
// child puts them back at once.
#define _GNU_SOURCE
#include "cap_platform.h"
#if CAP_HAVE_SAMPLER
#include "cap_sampler.h"
#include "lock_internal.h"
#include "wrapped_sampler.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

static cap_wrapped g_lock = CAP_WRAPPED_INIT(&cap_lock_session, &cap_lock_hook_set, "lock");

static void cap_lock_atfork_child(void) {
  cap_wrapped_forked(&g_lock);
  cap_lock_thread_forked();
}

int cap_lock_start(const cap_lock_config *config, char *message, size_t message_len) {
  if (config->rate_ns == 0 || config->rate_ns > (1ull << 40)) {
    cap_set_message(message, message_len, "invalid lock sampler configuration", 0);
    return -EINVAL;
  }
  static _Atomic int fork_registered;
  if (!atomic_exchange(&fork_registered, 1)) pthread_atfork(0, 0, cap_lock_atfork_child);
  int opened = cap_wrapped_open(&g_lock, &config->wrapper, message, message_len);
  if (opened != 0) return opened;
  cap_got_resolve(&cap_lock_try_set);
  for (size_t h = 0; h < cap_lock_try_set.count; h++) {
    if (*cap_lock_try_set.hooks[h].real == 0) {
      cap_wrapped_close(&g_lock);
      cap_set_message(message, message_len, "cannot find pthread's try-lock functions with dlsym", 0);
      return -ENOENT;
    }
  }
  atomic_store(&cap_lock_contentions, 0);
  atomic_store(&cap_lock_untracked, 0);
  atomic_store(&cap_lock_rate, config->rate_ns);
  uint32_t generation = atomic_load(&cap_lock_generation) + 1;
  if (generation == 0) generation = 1;
  atomic_store(&cap_lock_generation, generation);
  atomic_store(&cap_lock_session.active, 1);
  int installed = cap_wrapped_install(&g_lock, message, message_len);
  if (installed != 0) {
    cap_lock_release();
    return installed;
  }
  return 0;
}

int cap_lock_patch_new_images(void) { return cap_wrapped_patch_new_images(&g_lock); }

/// Waiters still blocked in a wrapper touch only the static lock table.
void cap_lock_stop(void) { cap_wrapped_stop(&g_lock); }

void cap_lock_release(void) {
  if (!atomic_load(&g_lock.owned)) return;
  cap_wrapped_stop(&g_lock);
  cap_wrapped_close(&g_lock);
}

size_t cap_lock_drain(void *out, size_t capacity, int full_scan) {
  return cap_wrapped_drain(&g_lock, out, capacity, full_scan, cap_lock_set_thread_ignored);
}

void cap_lock_stats_get(cap_lock_stats *out) {
  cap_session *s = &cap_lock_session;
  memset(out, 0, sizeof *out);
  out->samples_written = atomic_load_explicit(&s->counters.samples_written, memory_order_relaxed);
  out->samples_dropped = atomic_load_explicit(&s->counters.samples_dropped, memory_order_relaxed);
  out->complete_samples = atomic_load_explicit(&s->counters.complete_samples, memory_order_relaxed);
  out->contentions = atomic_load(&cap_lock_contentions);
  out->untracked_locks = atomic_load(&cap_lock_untracked);
  out->patched_slots = g_lock.patched_slots;
  out->patched_images = g_lock.patched_images;
  out->rate_ns = atomic_load(&cap_lock_rate);
  out->async_stitched = atomic_load_explicit(&s->counters.async_stitched, memory_order_relaxed);
  out->async_broken = atomic_load_explicit(&s->counters.async_broken, memory_order_relaxed);
}

int cap_lock_redirected_entries(void) { return cap_wrapped_count(&g_lock); }

#endif  // CAP_HAVE_SAMPLER
