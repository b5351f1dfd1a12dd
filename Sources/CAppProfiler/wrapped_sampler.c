// The lifecycle of the GOT-wrapper samplers: see wrapped_sampler.h.
#define _GNU_SOURCE
#include "cap_platform.h"
#if CAP_HAVE_SAMPLER
#include "cap_sampler.h"
#include "wrapped_sampler.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static void cap_wrapped_message(char *message, size_t length, const cap_wrapped *w, const char *what, int error) {
  char text[160];
  snprintf(text, sizeof text, what, w->name);
  cap_set_message(message, length, text, error);
}

static void cap_wrapped_unmap(cap_wrapped *w) {
  cap_session *s = w->session;
  if (w->memory != 0) munmap(w->memory, w->bytes);
  w->memory = 0;
  cap_got_set_table(w->hooks, 0, 0);
  s->range_sets = 0;
  s->slots = 0;
  s->unwind_images = 0;
  s->unwind_image_count = 0;
  memset(&s->async, 0, sizeof s->async);
}

int cap_wrapped_open(cap_wrapped *w, const cap_wrapper_config *config, char *message, size_t message_len) {
  int expected = 0;
  if (!atomic_compare_exchange_strong(&w->owned, &expected, 1)) {
    cap_wrapped_message(message, message_len, w, "an %s session is already running", 0);
    return -EBUSY;
  }
  cap_session *s = w->session;
  size_t range_bytes = 2 * sizeof(cap_range_set);
  size_t patch_bytes = cap_got_table_bytes();
  if (config->buffer_slots < 16) {
    atomic_store(&w->owned, 0);
    cap_wrapped_message(message, message_len, w, "invalid %s sampler configuration: fewer than 16 slots", 0);
    return -EINVAL;
  }
  size_t slot_bytes = (size_t)config->buffer_slots * sizeof(cap_slot);
  w->bytes = range_bytes + patch_bytes + slot_bytes;
  void *memory = mmap(0, w->bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (memory == MAP_FAILED) {
    int error = errno;
    atomic_store(&w->owned, 0);
    cap_wrapped_message(message, message_len, w, "mmap of the %s sample buffer failed", error);
    return -error;
  }
  w->memory = memory;
  s->range_sets = (cap_range_set *)memory;
  cap_got_set_table(w->hooks, (char *)memory + range_bytes, (uint32_t)(patch_bytes / sizeof(cap_patch)));
  cap_slots_reset(s, (cap_slot *)((char *)memory + range_bytes + patch_bytes), config->buffer_slots,
                  config->initial_slots != 0 ? config->initial_slots : config->buffer_slots);
  atomic_store(&s->current_ranges, 0);
  atomic_store(&s->ranges_stale, 0);
  s->unwind_images = config->unwind_images;
  s->unwind_image_count = config->unwind_images ? config->unwind_image_count : 0;
  s->async = config->async;
  cap_counters_clear(&s->counters);
  cap_ranges_refresh(s);
  cap_got_resolve(w->hooks);
  return 0;
}

int cap_wrapped_install(cap_wrapped *w, char *message, size_t message_len) {
  pthread_mutex_lock(&w->patch_lock);
  cap_got_result walk = cap_got_walk(w->hooks, CAP_WALK_PATCH);
  w->patched_images = walk.images;
  w->patched_slots = walk.changed;
  atomic_store(&w->installed, 1);
  if (walk.error != 0) {
    cap_got_walk(w->hooks, CAP_WALK_RESTORE);
    atomic_store(&w->installed, 0);
  }
  pthread_mutex_unlock(&w->patch_lock);
  if (walk.error != 0) cap_wrapped_message(message, message_len, w, "redirecting the %s functions failed", -walk.error);
  return walk.error;
}

int cap_wrapped_patch_new_images(cap_wrapped *w) {
  if (!atomic_load(&w->installed)) return 0;
  pthread_mutex_lock(&w->patch_lock);
  cap_got_result walk = {0, 0, 0};
  if (atomic_load(&w->installed)) {
    walk = cap_got_walk(w->hooks, CAP_WALK_PATCH);
    w->patched_images += walk.images;
    w->patched_slots += walk.changed;
  }
  pthread_mutex_unlock(&w->patch_lock);
  return (int)walk.changed;
}

void cap_wrapped_stop(cap_wrapped *w) {
  cap_session *s = w->session;
  if (!atomic_load(&w->owned)) return;
  pthread_mutex_lock(&w->patch_lock);
  if (atomic_load(&w->installed)) {
    cap_got_walk(w->hooks, CAP_WALK_RESTORE);
    atomic_store(&w->installed, 0);
  }
  pthread_mutex_unlock(&w->patch_lock);
  // Same protocol as the signal handler: a wrapper counts itself, then reads
  // `active`; once it is 0 and the count drained, nobody touches the ring.
  atomic_store(&s->active, 0);
  while (atomic_load(&s->handlers_running) != 0) {
    struct timespec pause = {0, 100000};
    nanosleep(&pause, 0);
  }
}

void cap_wrapped_close(cap_wrapped *w) {
  if (!atomic_load(&w->owned)) return;
  cap_wrapped_unmap(w);
  atomic_store(&w->owned, 0);
}

void cap_wrapped_forked(cap_wrapped *w) {
  if (atomic_load(&w->installed)) {
    cap_got_walk(w->hooks, CAP_WALK_RESTORE);
    atomic_store(&w->installed, 0);
  }
  atomic_store(&w->session->active, 0);
}

size_t cap_wrapped_drain(cap_wrapped *w, void *out, size_t capacity, int full_scan, int (*ignore)(int)) {
  cap_session *s = w->session;
  if (!atomic_load(&w->owned) || s->slots == 0) return 0;
  if (atomic_load(&s->active) && atomic_load(&s->ranges_stale)) {
    // A wrapper met a stack it did not know (a thread started since the last
    // snapshot). Reading /proc/self/maps allocates: not sampled.
    int was_ignored = ignore(1);
    cap_ranges_refresh(s);
    ignore(was_ignored);
  }
  return cap_slots_drain(s, out, capacity, full_scan);
}

int cap_wrapped_count(cap_wrapped *w) {
  pthread_mutex_lock(&w->patch_lock);
  cap_got_resolve(w->hooks);
  cap_got_result walk = cap_got_walk(w->hooks, CAP_WALK_COUNT);
  pthread_mutex_unlock(&w->patch_lock);
  return (int)walk.changed;
}

#endif  // CAP_HAVE_SAMPLER
