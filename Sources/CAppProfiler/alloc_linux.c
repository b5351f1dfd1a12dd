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
#include "wrapped_sampler.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

// MARK: - State

static cap_wrapped g_alloc = CAP_WRAPPED_INIT(&cap_alloc_session, &cap_alloc_hook_set, "allocation");

static void cap_alloc_atfork_child(void) {
  // The child has no drain thread: put its entries back, stop recording.
  cap_wrapped_forked(&g_alloc);
  // No waiting here: the parent's threads that were writing do not exist.
  atomic_store(&cap_heap_word, 0);
  atomic_store(&cap_heap_current, (cap_heap_table *)0);
  atomic_store(&cap_heap_writers, 0);
  atomic_store(&cap_heap_rebuilding, 0);
  cap_alloc_thread_forked();
}

// MARK: - Lifecycle

int cap_alloc_start(const cap_alloc_config *config, char *message, size_t message_len) {
  if (config->mean_bytes == 0) {
    cap_set_message(message, message_len, "invalid allocation sampler configuration", 0);
    return -EINVAL;
  }
  static _Atomic int fork_registered;
  if (!atomic_exchange(&fork_registered, 1)) pthread_atfork(0, 0, cap_alloc_atfork_child);
  int opened = cap_wrapped_open(&g_alloc, &config->wrapper, message, message_len);
  if (opened != 0) return opened;
  if (*cap_alloc_hooks[0].real == 0 || *cap_alloc_hooks[1].real == 0 || *cap_alloc_hooks[2].real == 0) {
    cap_wrapped_close(&g_alloc);
    cap_set_message(message, message_len, "cannot find malloc, calloc and realloc with dlsym", 0);
    return -ENOENT;
  }
  cap_alloc_choose_wrappers();
  if (cap_heap_enable(config->mean_bytes) != 0) {
    cap_wrapped_close(&g_alloc);
    cap_set_message(message, message_len, "mmap of the live-heap set failed", errno);
    return -ENOMEM;
  }
  atomic_store(&cap_alloc_mean, config->mean_bytes);
  uint32_t generation = atomic_load(&cap_alloc_generation) + 1;
  if (generation == 0) generation = 1;
  atomic_store(&cap_alloc_generation, generation);
  atomic_store(&cap_alloc_session.active, 1);
  int installed = cap_wrapped_install(&g_alloc, message, message_len);
  if (installed != 0) {
    cap_alloc_release();
    return installed;
  }
  return 0;
}

int cap_alloc_patch_new_images(void) { return cap_wrapped_patch_new_images(&g_alloc); }

void cap_alloc_stop(void) { cap_wrapped_stop(&g_alloc); }

void cap_alloc_release(void) {
  if (!atomic_load(&g_alloc.owned)) return;
  cap_wrapped_stop(&g_alloc);
  // Frees are no longer seen: what is still in the set cannot be told in use
  // (read it between stop and release).
  cap_heap_disable();
  cap_wrapped_close(&g_alloc);
}

size_t cap_alloc_drain(void *out, size_t capacity, int full_scan) {
  return cap_wrapped_drain(&g_alloc, out, capacity, full_scan, cap_alloc_set_thread_ignored);
}

void cap_alloc_stats_get(cap_alloc_stats *out) {
  cap_session *s = &cap_alloc_session;
  memset(out, 0, sizeof *out);
  out->samples_written = atomic_load_explicit(&s->counters.samples_written, memory_order_relaxed);
  out->samples_dropped = atomic_load_explicit(&s->counters.samples_dropped, memory_order_relaxed);
  out->complete_samples = atomic_load_explicit(&s->counters.complete_samples, memory_order_relaxed);
  out->patched_slots = g_alloc.patched_slots;
  out->patched_images = g_alloc.patched_images;
  out->mean_bytes = atomic_load(&cap_alloc_mean);
  out->async_stitched = atomic_load_explicit(&s->counters.async_stitched, memory_order_relaxed);
  out->async_broken = atomic_load_explicit(&s->counters.async_broken, memory_order_relaxed);
}

int cap_alloc_redirected_entries(void) { return cap_wrapped_count(&g_alloc); }

#endif  // CAP_HAVE_SAMPLER
