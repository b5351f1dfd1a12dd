// The allocation sampler's lifecycle (start, stop, drain, counters). The
// wrappers are in alloc_record.c, the GOT patching in got_patch_linux.c.
//
// Attach and detach at run time, with nothing intercepted outside a session:
// each loaded image calls malloc & co. (and Swift code calls
// swift_allocObject) through its GOT; cap_alloc_start points those entries
// at the wrappers below and cap_alloc_stop writes the original values back
// (heaptrack's and bytehound's approach for attaching to a running process).
// Entries inside PT_GNU_RELRO are read-only after start-up; they are made
// writable for the one store and read-only again.
//
// Not the runtime's _swift_allocObject hook: replacing it moves the Swift
// runtime onto its swizzled retain/release path, which crashed a plain
// `print("…", n)` in _swift_retain_adapterImpl on this toolchain.
//
// Sampling is by bytes, like Go's MemProfileRate: each thread counts down an
// exponentially distributed number of bytes (mean = the session's rate); the
// allocation that crosses zero is recorded with its size, stack and, for
// swift_allocObject, the type metadata. An allocation of s bytes is thus
// sampled with probability 1 - exp(-s / rate), which the Swift side divides
// out to estimate objects and bytes.
//
// The wrappers' fast path is a call to the real function, two thread-local
// reads and a subtraction. The recording path takes no locks and allocates
// nothing (it runs inside malloc): a slot of the lock-free ring, the CFI or
// frame-pointer walk of the signal handler, and a few atomics. A thread-local
// `busy` flag keeps nested calls (swift_allocObject -> malloc) from being
// counted twice and makes recursion impossible.
#define _GNU_SOURCE
#include "cap_platform.h"
#if CAP_HAVE_SAMPLER
#include "alloc_internal.h"
#include "cap_sampler.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

// MARK: - State


static _Atomic int g_alloc_owned;            // between start and release
static _Atomic int g_alloc_installed;        // entries redirected
static void *g_alloc_memory;
static size_t g_alloc_bytes;
static pthread_mutex_t g_patch_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t g_patched_images;
static uint64_t g_patched_slots;  // entries redirected by the last install (kept after stop)

static void cap_alloc_atfork_child(void) {
  // The child has no drain thread: put its entries back, stop recording.
  if (atomic_load(&g_alloc_installed)) {
    cap_got_walk(&cap_alloc_hook_set, CAP_WALK_RESTORE);
    atomic_store(&g_alloc_installed, 0);
  }
  atomic_store(&cap_alloc_session.active, 0);
  // No waiting here: the parent's threads that were writing do not exist.
  atomic_store(&cap_heap_word, 0);
  atomic_store(&cap_heap_current, (cap_heap_table *)0);
  atomic_store(&cap_heap_writers, 0);
  atomic_store(&cap_heap_rebuilding, 0);
  cap_alloc_thread_forked();
}

// MARK: - Lifecycle

static void cap_alloc_unmap(void) {
  cap_session *s = &cap_alloc_session;
  if (g_alloc_memory != 0) munmap(g_alloc_memory, g_alloc_bytes);
  g_alloc_memory = 0;
  cap_got_set_table(&cap_alloc_hook_set, 0, 0);
  s->range_sets = 0;
  s->slots = 0;
  s->unwind_images = 0;
  s->unwind_image_count = 0;
  memset(&s->async, 0, sizeof s->async);
}

int cap_alloc_start(const cap_alloc_config *config, char *message, size_t message_len) {
  int expected = 0;
  if (!atomic_compare_exchange_strong(&g_alloc_owned, &expected, 1)) {
    cap_set_message(message, message_len, "an allocation session is already running", 0);
    return -EBUSY;
  }
  if (config->mean_bytes == 0 || config->buffer_slots < 16) {
    atomic_store(&g_alloc_owned, 0);
    cap_set_message(message, message_len, "invalid allocation sampler configuration", 0);
    return -EINVAL;
  }
  static _Atomic int fork_registered;
  if (!atomic_exchange(&fork_registered, 1)) pthread_atfork(0, 0, cap_alloc_atfork_child);

  cap_session *s = &cap_alloc_session;
  size_t range_bytes = 2 * sizeof(cap_range_set);
  size_t patch_bytes = cap_got_table_bytes();
  size_t slot_bytes = (size_t)config->buffer_slots * sizeof(cap_slot);
  g_alloc_bytes = range_bytes + patch_bytes + slot_bytes;
  void *memory = mmap(0, g_alloc_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (memory == MAP_FAILED) {
    int error = errno;
    atomic_store(&g_alloc_owned, 0);
    cap_set_message(message, message_len, "mmap of the allocation sample buffer failed", error);
    return -error;
  }
  g_alloc_memory = memory;
  s->range_sets = (cap_range_set *)memory;
  cap_got_set_table(&cap_alloc_hook_set, (char *)memory + range_bytes, (uint32_t)(patch_bytes / sizeof(cap_patch)));
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
  cap_ranges_refresh(s);

  cap_got_resolve(&cap_alloc_hook_set);
  if (*cap_alloc_hooks[0].real == 0 || *cap_alloc_hooks[1].real == 0 || *cap_alloc_hooks[2].real == 0) {
    cap_alloc_unmap();
    atomic_store(&g_alloc_owned, 0);
    cap_set_message(message, message_len, "cannot find malloc, calloc and realloc with dlsym", 0);
    return -ENOENT;
  }
  cap_alloc_choose_wrappers();
  if (cap_heap_enable(config->mean_bytes) != 0) {
    cap_alloc_unmap();
    atomic_store(&g_alloc_owned, 0);
    cap_set_message(message, message_len, "mmap of the live-heap set failed", errno);
    return -ENOMEM;
  }
  atomic_store(&cap_alloc_mean, config->mean_bytes);
  uint32_t generation = atomic_load(&cap_alloc_generation) + 1;
  if (generation == 0) generation = 1;
  atomic_store(&cap_alloc_generation, generation);
  atomic_store(&s->active, 1);

  pthread_mutex_lock(&g_patch_lock);
  cap_got_result walk = cap_got_walk(&cap_alloc_hook_set, CAP_WALK_PATCH);
  g_patched_images = walk.images;
  g_patched_slots = walk.changed;
  atomic_store(&g_alloc_installed, 1);
  if (walk.error != 0) {
    cap_got_walk(&cap_alloc_hook_set, CAP_WALK_RESTORE);
    atomic_store(&g_alloc_installed, 0);
    pthread_mutex_unlock(&g_patch_lock);
    cap_alloc_stop();
    cap_alloc_release();
    cap_set_message(message, message_len, "redirecting the allocation functions failed", -walk.error);
    return walk.error;
  }
  pthread_mutex_unlock(&g_patch_lock);
  return 0;
}

int cap_alloc_patch_new_images(void) {
  if (!atomic_load(&g_alloc_installed)) return 0;
  pthread_mutex_lock(&g_patch_lock);
  cap_got_result walk = {0, 0, 0};
  if (atomic_load(&g_alloc_installed)) {
    walk = cap_got_walk(&cap_alloc_hook_set, CAP_WALK_PATCH);
    g_patched_images += walk.images;
    g_patched_slots += walk.changed;
  }
  pthread_mutex_unlock(&g_patch_lock);
  return (int)walk.changed;
}

void cap_alloc_stop(void) {
  cap_session *s = &cap_alloc_session;
  if (!atomic_load(&g_alloc_owned)) return;
  pthread_mutex_lock(&g_patch_lock);
  if (atomic_load(&g_alloc_installed)) {
    cap_got_walk(&cap_alloc_hook_set, CAP_WALK_RESTORE);
    atomic_store(&g_alloc_installed, 0);
  }
  pthread_mutex_unlock(&g_patch_lock);
  // Same protocol as the signal handler: a wrapper counts itself, then reads
  // `active`; once it is 0 and the count drained, nobody touches the ring.
  atomic_store(&s->active, 0);
  while (atomic_load(&s->handlers_running) != 0) {
    struct timespec pause = {0, 100000};
    nanosleep(&pause, 0);
  }
}

void cap_alloc_release(void) {
  if (!atomic_load(&g_alloc_owned)) return;
  cap_alloc_stop();
  // Frees are no longer seen: what is still in the set cannot be told in use
  // (read it between stop and release).
  cap_heap_disable();
  cap_alloc_unmap();
  atomic_store(&g_alloc_owned, 0);
}

size_t cap_alloc_drain(void *out, size_t capacity, int full_scan) {
  cap_session *s = &cap_alloc_session;
  if (!atomic_load(&g_alloc_owned) || s->slots == 0) return 0;
  if (atomic_load(&s->active) && atomic_load(&s->ranges_stale)) {
    // A wrapper met a stack it did not know (a thread started since the last
    // snapshot). Reading /proc/self/maps allocates: not sampled.
    int was_ignored = cap_alloc_set_thread_ignored(1);
    cap_ranges_refresh(s);
    cap_alloc_set_thread_ignored(was_ignored);
  }
  return cap_slots_drain(s, out, capacity, full_scan);
}

void cap_alloc_stats_get(cap_alloc_stats *out) {
  cap_session *s = &cap_alloc_session;
  memset(out, 0, sizeof *out);
  out->samples_written = atomic_load(&s->samples_written);
  out->samples_dropped = atomic_load(&s->samples_dropped);
  out->complete_samples = atomic_load(&s->complete_samples);
  out->patched_slots = g_patched_slots;
  out->patched_images = g_patched_images;
  out->mean_bytes = atomic_load(&cap_alloc_mean);
  out->async_stitched = atomic_load(&cap_alloc_session.async_stitched);
  out->async_broken = atomic_load(&cap_alloc_session.async_broken);
}

int cap_alloc_redirected_entries(void) {
  pthread_mutex_lock(&g_patch_lock);
  cap_got_resolve(&cap_alloc_hook_set);
  cap_got_result walk = cap_got_walk(&cap_alloc_hook_set, CAP_WALK_COUNT);
  pthread_mutex_unlock(&g_patch_lock);
  return (int)walk.changed;
}

#endif  // CAP_HAVE_SAMPLER
