// The lock sampler's lifecycle (start, stop, drain, counters). The wrappers
// are in lock_record.c, the GOT redirection in got_patch_linux.c; the design
// follows the allocation sampler's (alloc_linux.c): nothing is intercepted
// outside a session, entries are written back at stop, a forked child puts
// them back at once.
#define _GNU_SOURCE
#include "cap_platform.h"
#if CAP_HAVE_SAMPLER
#include "cap_sampler.h"
#include "lock_internal.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static _Atomic int g_lock_owned;      // between start and release
static _Atomic int g_lock_installed;  // entries redirected
static void *g_lock_memory;
static size_t g_lock_bytes;
static pthread_mutex_t g_lock_patch_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t g_lock_patched_images;
static uint64_t g_lock_patched_slots;

static void cap_lock_atfork_child(void) {
  if (atomic_load(&g_lock_installed)) {
    cap_got_walk(&cap_lock_hook_set, CAP_WALK_RESTORE);
    atomic_store(&g_lock_installed, 0);
  }
  atomic_store(&cap_lock_session.active, 0);
  cap_lock_thread_forked();
}

static void cap_lock_unmap(void) {
  cap_session *s = &cap_lock_session;
  if (g_lock_memory != 0) munmap(g_lock_memory, g_lock_bytes);
  g_lock_memory = 0;
  cap_got_set_table(&cap_lock_hook_set, 0, 0);
  s->range_sets = 0;
  s->slots = 0;
  s->unwind_images = 0;
  s->unwind_image_count = 0;
  memset(&s->async, 0, sizeof s->async);
}

int cap_lock_start(const cap_lock_config *config, char *message, size_t message_len) {
  int expected = 0;
  if (!atomic_compare_exchange_strong(&g_lock_owned, &expected, 1)) {
    cap_set_message(message, message_len, "a lock session is already running", 0);
    return -EBUSY;
  }
  if (config->rate_ns == 0 || config->rate_ns > (1ull << 40) || config->buffer_slots < 16) {
    atomic_store(&g_lock_owned, 0);
    cap_set_message(message, message_len, "invalid lock sampler configuration", 0);
    return -EINVAL;
  }
  static _Atomic int fork_registered;
  if (!atomic_exchange(&fork_registered, 1)) pthread_atfork(0, 0, cap_lock_atfork_child);

  cap_session *s = &cap_lock_session;
  size_t range_bytes = 2 * sizeof(cap_range_set);
  size_t patch_bytes = cap_got_table_bytes();
  size_t slot_bytes = (size_t)config->buffer_slots * sizeof(cap_slot);
  g_lock_bytes = range_bytes + patch_bytes + slot_bytes;
  void *memory = mmap(0, g_lock_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (memory == MAP_FAILED) {
    int error = errno;
    atomic_store(&g_lock_owned, 0);
    cap_set_message(message, message_len, "mmap of the lock sample buffer failed", error);
    return -error;
  }
  g_lock_memory = memory;
  s->range_sets = (cap_range_set *)memory;
  cap_got_set_table(&cap_lock_hook_set, (char *)memory + range_bytes, (uint32_t)(patch_bytes / sizeof(cap_patch)));
  s->slots = (cap_slot *)((char *)memory + range_bytes + patch_bytes);
  s->slot_count = config->buffer_slots;
  atomic_store(&s->write_cursor, 0);
  s->read_cursor = 0;
  atomic_store(&s->current_ranges, 0);
  atomic_store(&s->ranges_stale, 0);
  s->unwind_images = config->unwind_images;
  s->unwind_image_count = config->unwind_images ? config->unwind_image_count : 0;
  s->async = config->async;
  atomic_store(&s->async_stitched, 0);
  atomic_store(&s->async_broken, 0);
  atomic_store(&s->samples_written, 0);
  atomic_store(&s->samples_dropped, 0);
  atomic_store(&s->complete_samples, 0);
  atomic_store(&cap_lock_contentions, 0);
  atomic_store(&cap_lock_untracked, 0);
  cap_ranges_refresh(s);

  cap_got_resolve(&cap_lock_hook_set);
  cap_got_resolve(&cap_lock_try_set);
  for (size_t h = 0; h < cap_lock_try_set.count; h++) {
    if (*cap_lock_try_set.hooks[h].real == 0) {
      cap_lock_unmap();
      atomic_store(&g_lock_owned, 0);
      cap_set_message(message, message_len, "cannot find pthread's try-lock functions with dlsym", 0);
      return -ENOENT;
    }
  }
  atomic_store(&cap_lock_rate, config->rate_ns);
  uint32_t generation = atomic_load(&cap_lock_generation) + 1;
  if (generation == 0) generation = 1;
  atomic_store(&cap_lock_generation, generation);
  atomic_store(&s->active, 1);

  pthread_mutex_lock(&g_lock_patch_lock);
  cap_got_result walk = cap_got_walk(&cap_lock_hook_set, CAP_WALK_PATCH);
  g_lock_patched_images = walk.images;
  g_lock_patched_slots = walk.changed;
  atomic_store(&g_lock_installed, 1);
  if (walk.error != 0) {
    cap_got_walk(&cap_lock_hook_set, CAP_WALK_RESTORE);
    atomic_store(&g_lock_installed, 0);
    pthread_mutex_unlock(&g_lock_patch_lock);
    cap_lock_release();
    cap_set_message(message, message_len, "redirecting the lock functions failed", -walk.error);
    return walk.error;
  }
  pthread_mutex_unlock(&g_lock_patch_lock);
  return 0;
}

int cap_lock_patch_new_images(void) {
  if (!atomic_load(&g_lock_installed)) return 0;
  pthread_mutex_lock(&g_lock_patch_lock);
  cap_got_result walk = {0, 0, 0};
  if (atomic_load(&g_lock_installed)) {
    walk = cap_got_walk(&cap_lock_hook_set, CAP_WALK_PATCH);
    g_lock_patched_images += walk.images;
    g_lock_patched_slots += walk.changed;
  }
  pthread_mutex_unlock(&g_lock_patch_lock);
  return (int)walk.changed;
}

void cap_lock_stop(void) {
  cap_session *s = &cap_lock_session;
  if (!atomic_load(&g_lock_owned)) return;
  pthread_mutex_lock(&g_lock_patch_lock);
  if (atomic_load(&g_lock_installed)) {
    cap_got_walk(&cap_lock_hook_set, CAP_WALK_RESTORE);
    atomic_store(&g_lock_installed, 0);
  }
  pthread_mutex_unlock(&g_lock_patch_lock);
  // A wrapper counts itself, then reads `active`; once it is 0 and the
  // count drained, nobody touches the ring. (Waiters still blocked in a
  // wrapper touch only the static lock table.)
  atomic_store(&s->active, 0);
  while (atomic_load(&s->handlers_running) != 0) {
    struct timespec pause = {0, 100000};
    nanosleep(&pause, 0);
  }
}

void cap_lock_release(void) {
  if (!atomic_load(&g_lock_owned)) return;
  cap_lock_stop();
  cap_lock_unmap();
  atomic_store(&g_lock_owned, 0);
}

size_t cap_lock_drain(void *out, size_t capacity, int full_scan) {
  cap_session *s = &cap_lock_session;
  if (!atomic_load(&g_lock_owned) || s->slots == 0) return 0;
  if (atomic_load(&s->active) && atomic_load(&s->ranges_stale)) {
    int was_ignored = cap_lock_set_thread_ignored(1);
    cap_ranges_refresh(s);
    cap_lock_set_thread_ignored(was_ignored);
  }
  return cap_slots_drain(s, out, capacity, full_scan);
}

void cap_lock_stats_get(cap_lock_stats *out) {
  cap_session *s = &cap_lock_session;
  memset(out, 0, sizeof *out);
  out->samples_written = atomic_load(&s->samples_written);
  out->samples_dropped = atomic_load(&s->samples_dropped);
  out->complete_samples = atomic_load(&s->complete_samples);
  out->contentions = atomic_load(&cap_lock_contentions);
  out->untracked_locks = atomic_load(&cap_lock_untracked);
  out->patched_slots = g_lock_patched_slots;
  out->patched_images = g_lock_patched_images;
  out->rate_ns = atomic_load(&cap_lock_rate);
  out->async_stitched = atomic_load(&s->async_stitched);
  out->async_broken = atomic_load(&s->async_broken);
}

int cap_lock_redirected_entries(void) {
  pthread_mutex_lock(&g_lock_patch_lock);
  cap_got_resolve(&cap_lock_hook_set);
  cap_got_result walk = cap_got_walk(&cap_lock_hook_set, CAP_WALK_COUNT);
  pthread_mutex_unlock(&g_lock_patch_lock);
  return (int)walk.changed;
}

#endif  // CAP_HAVE_SAMPLER
