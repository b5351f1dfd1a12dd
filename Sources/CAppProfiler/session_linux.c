// Session lifecycle on Linux: arming, the ticker thread, thread discovery,
// memory-range snapshots and the drain. Nothing here runs in a signal handler.
//
// Engines (measured on a 2-core CONFIG_HZ=250 machine, 2 busy threads, 1 ms):
//   perf events: perf_event_open(PERF_COUNT_SW_TASK_CLOCK, pid = tid) per thread,
//     O_ASYNC + F_SETSIG + F_SETOWN_EX(F_OWNER_TID), PERF_EVENT_IOC_REFRESH(1)
//     re-armed by the handler: ~98 % of the expected samples.
//   POSIX CPU timers: timer_create on the thread's CPU clock with
//     SIGEV_THREAD_ID: only fires on scheduler ticks, so at 1 kHz a sample
//     stands for ~4 intervals (weight 1 + si_overrun). Chosen automatically
//     when the interval is at least one tick (100 Hz here): per-thread perf
//     events make every context switch of the profiled threads dearer (~8 %
//     of a server doing 26k switches/s), timers do not. Also used where
//     perf_event_open is refused (seccomp, perf_event_paranoid 3).
//   wall ticker: a thread wakes on absolute deadlines and signals every
//     thread whose CPU clock moved since its last sample (rt_tgsigqueueinfo
//     with our cookie, so the handler knows the signal is ours); the others
//     get a run-length "repeat" record, so a blocked thread is interrupted at
//     most once per stretch of blocking. A thread whose signal is still
//     pending is not signalled again; if it blocks the signal, its ticks are
//     charged to [signal blocked].
#define _GNU_SOURCE
#include "cap_platform.h"
#if CAP_HAVE_SAMPLER
#include "cap_sampler.h"
#include "cap_jitter.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/perf_event.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

// MARK: - Process-wide state: one runtime per kind (cpu, wall), each
// guarded by its `owned` flag (one session of a kind at a time)

#define CAP_SCAN_CAPACITY 65536

typedef struct cap_runtime {
  _Atomic int owned;            // 1 between start and release
  int started;                  // sampling armed and not yet stopped
  pthread_t ticker;
  int ticker_running;
  _Atomic int ticker_stop;
  _Atomic int32_t ticker_tid;
  int task_dir_fd;               // valid while task_dir_open
  int task_dir_open;
  uint32_t generation;          // thread-scan generation
  uint32_t max_threads;
  uint32_t live_threads;
  cap_sampler sampler;
  void *table_memory;
  size_t table_bytes;
  void *slot_memory;
  size_t slot_bytes;
  // Ticker-only counters, published through cap_session_stats.
  _Atomic uint64_t ticks, missed_ticks;
  _Atomic uint64_t threads_seen, threads_failed, tick_ns_total, maps_refreshes;
  // The ticker's scan buffers (zero pages until a scan touches them).
  int32_t scan_tids[CAP_SCAN_CAPACITY];
  int32_t new_tids[CAP_SCAN_CAPACITY];
} cap_runtime;

// Zero-initialized (.bss): 2.5 MiB of scan buffers that take neither file
// space nor memory until a profile's ticker touches them.
static cap_runtime g_runtimes[CAP_KIND_COUNT];
/// Session generations are unique across kinds: a cookie names its session.
static _Atomic uint32_t g_generations;

static cap_runtime *runtime_of(cap_session *s) { return &g_runtimes[s - cap_sessions]; }

/// The kind of `mode`, or -1.
static int kind_of(int32_t mode) {
  switch (mode) {
  case CAP_MODE_CPU: return CAP_KIND_CPU;
  case CAP_MODE_WALL: return CAP_KIND_WALL;
  case CAP_MODE_SNAPSHOT: return CAP_KIND_SNAPSHOT;
  case CAP_MODE_FLIGHT_CPU: return CAP_KIND_FLIGHT_CPU;
  case CAP_MODE_FLIGHT_WALL: return CAP_KIND_FLIGHT_WALL;
  default: return -1;
  }
}

/// 1 when `tid` is one of the profiler's ticker threads (never sampled).
static int is_ticker(int32_t tid) {
  for (int k = 0; k < CAP_KIND_COUNT; k++) {
    if (atomic_load(&g_runtimes[k].ticker_tid) == tid) return 1;
  }
  return 0;
}

// MARK: - Arming one thread (the engines: engine_*_linux.c)

static int arm_thread(cap_session *s, cap_thread *t, int32_t tid) {
  switch (s->engine) {
  case CAP_ENGINE_PERF_EVENT:
    return cap_perf_arm(s, &runtime_of(s)->sampler, t, tid);
  case CAP_ENGINE_POSIX_TIMER:
    return cap_timer_arm(s, t, tid);
  case CAP_ENGINE_WALL_TICKER:
    return cap_wall_arm(s, t, tid);
  case CAP_ENGINE_CPU_TICKER:
    return cap_cputick_arm(s, t, tid);
  }
  return -EINVAL;
}

static void disarm_thread(cap_session *s, cap_thread *t, int32_t tid) {
  int fd = atomic_exchange(&t->perf_fd, -1);
  if (fd >= 0) {
    ioctl(fd, PERF_EVENT_IOC_DISABLE, 0);
    close(fd);
  }
  if (__atomic_load_n(&t->has_timer, __ATOMIC_ACQUIRE)) {
    __atomic_store_n(&t->has_timer, 0, __ATOMIC_RELEASE);
    timer_delete(t->timer);
  }
  if (s->engine == CAP_ENGINE_WALL_TICKER) cap_wall_flush(s, &runtime_of(s)->sampler, t, tid);
}

// MARK: - Memory ranges (memory_ranges_linux.c)

static void refresh_ranges(cap_session *s) {
  cap_ranges_refresh(s);
  atomic_fetch_add(&runtime_of(s)->maps_refreshes, 1);
}

// MARK: - Thread discovery

struct linux_dirent64_header {
  uint64_t d_ino;
  int64_t d_off;
  unsigned short d_reclen;
  unsigned char d_type;
  char d_name[];
};

/// Lists /proc/self/task into `tids` (up to `capacity`); returns the count.
static uint32_t list_tasks(int task_dir_fd, int32_t *tids, uint32_t capacity) {
  if (task_dir_fd < 0) return 0;
  if (lseek(task_dir_fd, 0, SEEK_SET) != 0) return 0;
  char buffer[16384];
  uint32_t count = 0;
  for (;;) {
    long n = syscall(SYS_getdents64, task_dir_fd, buffer, sizeof buffer);
    if (n <= 0) break;
    for (long offset = 0; offset < n;) {
      struct linux_dirent64_header *entry = (struct linux_dirent64_header *)(buffer + offset);
      offset += entry->d_reclen;
      const char *name = entry->d_name;
      if (name[0] < '0' || name[0] > '9') continue;
      int32_t tid = (int32_t)strtol(name, 0, 10);
      if (tid > 0 && count < capacity) tids[count++] = tid;
    }
  }
  return count;
}

/// Arms threads that appeared and disarms threads that are gone.
static void scan_threads(cap_session *s) {
  cap_runtime *r = runtime_of(s);
  uint32_t count = list_tasks(r->task_dir_open ? r->task_dir_fd : -1, r->scan_tids, CAP_SCAN_CAPACITY);
  uint32_t generation = ++r->generation;
  uint32_t new_count = 0;
  uint32_t known = 0;
  for (uint32_t i = 0; i < count; i++) {
    int32_t tid = r->scan_tids[i];
    if (is_ticker(tid)) continue;
    cap_thread *t = cap_thread_find(s, tid);
    if (t != 0) {
      t->seen_generation = generation;
      known++;
    } else {
      r->new_tids[new_count++] = tid;
    }
  }
  // A new thread's stack was mapped before the thread existed: take a fresh
  // snapshot before the first signal can reach it.
  if (new_count > 0 || atomic_load(&s->ranges_stale)) refresh_ranges(s);
  // Every entry was listed again and none is new: nothing to disarm or add.
  // (The walks below read the whole table, 8192 entries of 96 bytes by
  // default; every 10 ms, that was most of the ticker's CPU.)
  if (new_count == 0 && known == r->live_threads) return;

  for (uint32_t i = 0; i < s->thread_capacity; i++) {
    cap_thread *t = &s->threads[i];
    int32_t tid = atomic_load(&t->tid);
    if (tid > 0 && t->seen_generation != generation) {
      disarm_thread(s, t, tid);
      atomic_store(&t->tid, CAP_TID_TOMBSTONE);
      r->live_threads--;
    }
  }
  for (uint32_t i = 0; i < new_count; i++) {
    int32_t tid = r->new_tids[i];
    if (r->live_threads >= r->max_threads) {
      atomic_fetch_add(&r->threads_failed, 1);
      continue;
    }
    cap_thread *t = cap_thread_insert(s, tid);
    if (t == 0) {
      atomic_fetch_add(&r->threads_failed, 1);
      continue;
    }
    t->seen_generation = generation;
    r->live_threads++;
    if (arm_thread(s, t, tid) != 0) {
      // Most often the thread exited between the listing and now. Keep the
      // entry (tombstoned on the next scan) so it is not retried every scan.
      atomic_fetch_add(&r->threads_failed, 1);
    } else {
      atomic_fetch_add(&r->threads_seen, 1);
    }
  }
  uint32_t live = 0;
  for (uint32_t i = 0; i < s->thread_capacity && live < r->max_threads; i++) {
    if (atomic_load_explicit(&s->threads[i].tid, memory_order_relaxed) > 0) r->sampler.live_list[live++] = i;
  }
  r->sampler.live_list_count = live;
}

// MARK: - Ticker thread

#define CAP_SCAN_PERIOD_NS 10000000ull      // new threads are picked up within 10 ms,
#define CAP_MAX_SCAN_PERIOD_NS 50000000ull  // or one interval up to 50 ms: at 19 Hz a
                                            // thread is rarely sampled sooner anyway

static void *ticker_main(void *argument) {
  cap_session *s = (cap_session *)argument;
  cap_runtime *r = runtime_of(s);
  atomic_store(&r->ticker_tid, (int32_t)syscall(SYS_gettid));
  pthread_setname_np(pthread_self(), "app-profiler");
  int wall = s->engine == CAP_ENGINE_WALL_TICKER;
  int cputick = s->engine == CAP_ENGINE_CPU_TICKER;
  uint64_t scan_period = s->interval_ns < CAP_SCAN_PERIOD_NS       ? CAP_SCAN_PERIOD_NS
                         : s->interval_ns > CAP_MAX_SCAN_PERIOD_NS ? CAP_MAX_SCAN_PERIOD_NS
                                                                   : s->interval_ns;
  uint64_t period = wall || cputick ? s->interval_ns : scan_period;
  uint64_t deadline = cap_clock_ns(CLOCK_MONOTONIC);
  // Ticks at randomized intervals of the same mean (cap_jitter.h); a
  // thread dump's one tick stays at its fixed time (the caller waits for it).
  int jittered = (wall && s->mode != CAP_MODE_SNAPSHOT) || cputick;
  uint64_t jitter = cap_jitter_seed(deadline ^ (uint64_t)(uintptr_t)s);
  uint64_t last_scan = deadline;
  while (!atomic_load(&r->ticker_stop)) {
    deadline += jittered ? cap_jittered_interval(&jitter, period) : period;
    struct timespec until = {(time_t)(deadline / 1000000000ull),
                             (long)(deadline % 1000000000ull)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, 0) == EINTR) {
    }
    if (atomic_load(&r->ticker_stop)) break;
    uint64_t now = cap_clock_ns(CLOCK_MONOTONIC);
    if (now - last_scan >= scan_period || atomic_load(&s->ranges_stale)) {
      scan_threads(s);
      last_scan = now;
    }
    if (wall || cputick) {
      if (wall) {
        cap_wall_tick(s, &r->sampler, now);
      } else {
        cap_cputick_tick(s, &r->sampler, now);
      }
      uint64_t done = cap_clock_ns(CLOCK_MONOTONIC);
      atomic_fetch_add_explicit(&r->ticks, 1, memory_order_relaxed);
      atomic_fetch_add_explicit(&r->tick_ns_total, done - now, memory_order_relaxed);
    }
    uint64_t after = cap_clock_ns(CLOCK_MONOTONIC);
    if (after > deadline + period) {
      // Fell behind by more than one period: skip, count, and re-anchor so
      // the rate does not burst to catch up.
      uint64_t missed = (after - deadline) / period;
      atomic_fetch_add(&r->missed_ticks, missed);
      deadline += missed * period;
    }
  }
  if (wall) {
    for (uint32_t i = 0; i < s->thread_capacity; i++) {
      cap_thread *t = &s->threads[i];
      int32_t tid = atomic_load(&t->tid);
      if (tid > 0) cap_wall_flush(s, &r->sampler, t, tid);
    }
  }
  return 0;
}

// MARK: - Start

static void *map_zeroed(size_t bytes) {
  void *memory = mmap(0, bytes, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  return memory == MAP_FAILED ? 0 : memory;
}

uint64_t cap_scheduler_tick_ns(void) {
  // The coarse clocks advance once per scheduler tick, so their resolution is
  // the tick (1/CONFIG_HZ); POSIX CPU timers are checked on those ticks.
  struct timespec resolution;
  if (clock_getres(CLOCK_MONOTONIC_COARSE, &resolution) != 0) return UINT64_MAX;
  return (uint64_t)resolution.tv_sec * 1000000000u + (uint64_t)resolution.tv_nsec;
}

static void release_memory(cap_session *s) {
  cap_runtime *r = runtime_of(s);
  if (r->table_memory != 0) munmap(r->table_memory, r->table_bytes);
  if (r->slot_memory != 0) munmap(r->slot_memory, r->slot_bytes);
  r->table_memory = 0;
  r->slot_memory = 0;
  s->unwind_images = 0;
  s->unwind_image_count = 0;
  memset(&s->async, 0, sizeof s->async);
  r->sampler.live_list = 0;
  r->sampler.live_list_count = 0;
  s->threads = 0;
  s->range_sets = 0;
  s->slots = 0;
}

int cap_session_start(const cap_config *config, char *message, size_t message_len) {
  int kind = kind_of(config->mode);
  if (kind < 0) {
    cap_set_message(message, message_len, "invalid session configuration", 0);
    return -EINVAL;
  }
  cap_session *s = &cap_sessions[kind];
  cap_runtime *r = &g_runtimes[kind];
  int expected = 0;
  if (!atomic_compare_exchange_strong(&r->owned, &expected, 1)) {
    cap_set_message(message, message_len, "a profiling session of this kind is already running", 0);
    return -EBUSY;
  }
  if (config->interval_ns < 10000 || config->buffer_slots < 16 || config->max_threads < 1 ||
      config->signal_number <= 0 || config->signal_number >= NSIG) {
    atomic_store(&r->owned, 0);
    cap_set_message(message, message_len, "invalid session configuration", 0);
    return -EINVAL;
  }

  atomic_store(&s->active, 0);
  atomic_store(&s->generation, atomic_fetch_add(&g_generations, 1) + 1);
  atomic_store_explicit(&s->pid, getpid(), memory_order_relaxed);
  r->sampler.uid = (uint32_t)getuid();
  s->mode = config->mode;
  s->signal_number = config->signal_number;
  s->interval_ns = config->interval_ns;
  s->idle_threshold_ns = config->interval_ns / 4 < 50000 ? config->interval_ns / 4 : 50000;
  s->unwind_images = config->unwind_images;
  s->unwind_image_count = config->unwind_images ? config->unwind_image_count : 0;
  s->async = config->async;
  atomic_store(&s->async_stitched, 0);
  atomic_store(&s->async_broken, 0);
  atomic_store(&s->complete_samples, 0);
  r->sampler.exclude_kernel = config->exclude_kernel ? 1 : 0;
  r->max_threads = config->max_threads;
  r->live_threads = 0;
  r->generation = 0;
  atomic_store(&r->ticker_stop, 0);
  atomic_store(&r->ticker_tid, 0);
  atomic_store(&s->samples_written, 0);
  atomic_store(&s->samples_dropped, 0);
  atomic_store(&r->sampler.repeat_records, 0);
  atomic_store(&r->ticks, 0);
  atomic_store(&r->missed_ticks, 0);
  atomic_store(&r->sampler.signals_sent, 0);
  atomic_store(&r->threads_seen, 0);
  atomic_store(&r->threads_failed, 0);
  atomic_store(&r->tick_ns_total, 0);
  atomic_store(&r->maps_refreshes, 0);
  atomic_store(&r->sampler.threads_signal_blocked, 0);
  atomic_store(&r->sampler.undelivered_ticks, 0);
  atomic_store(&r->sampler.pending_skips, 0);

  // The automatic cpu engine: POSIX timers at intervals of a tick or more,
  // perf events below. The CPU ticker (no tick-locked phases, ~9 % at 1 kHz
  // on the HTTP benchmark against perf events' ~30 %) is asked for by name
  // only: it puts part of a lightly running thread's samples on its wait
  // when it shares a core with the ticker (docs/sampling.md).
  if (config->mode == CAP_MODE_WALL || config->mode == CAP_MODE_SNAPSHOT || config->mode == CAP_MODE_FLIGHT_WALL) {
    s->engine = CAP_ENGINE_WALL_TICKER;
  } else if (config->engine == CAP_ENGINE_CPU_TICKER) {
    s->engine = CAP_ENGINE_CPU_TICKER;
  } else if (config->mode == CAP_MODE_FLIGHT_CPU || config->engine == CAP_ENGINE_POSIX_TIMER ||
             (config->engine == CAP_ENGINE_AUTO && config->interval_ns >= cap_scheduler_tick_ns())) {
    s->engine = CAP_ENGINE_POSIX_TIMER;
  } else {
    int probe = cap_perf_probe(&r->sampler, s->interval_ns);
    if (probe == 0) {
      s->engine = CAP_ENGINE_PERF_EVENT;
    } else if (config->engine == CAP_ENGINE_PERF_EVENT) {
      atomic_store(&r->owned, 0);
      cap_set_message(message, message_len, "perf_event_open refused", -probe);
      return probe;
    } else {
      s->engine = CAP_ENGINE_POSIX_TIMER;
    }
  }

  // Thread table: a power of two at least twice max_threads.
  uint32_t capacity = 64;
  while (capacity < config->max_threads * 2) capacity <<= 1;
  size_t thread_bytes = (size_t)capacity * sizeof(cap_thread);
  size_t range_bytes = 2 * sizeof(cap_range_set);
  size_t live_bytes = (size_t)config->max_threads * sizeof(uint32_t);
  r->table_bytes = thread_bytes + range_bytes + live_bytes;
  r->table_memory = map_zeroed(r->table_bytes);
  r->slot_bytes = (size_t)config->buffer_slots * sizeof(cap_slot);
  r->slot_memory = map_zeroed(r->slot_bytes);
  if (r->table_memory == 0 || r->slot_memory == 0) {
    int error = errno;
    release_memory(s);
    atomic_store(&r->owned, 0);
    cap_set_message(message, message_len, "mmap of the sample buffer failed", error);
    return -error;
  }
  s->threads = (cap_thread *)r->table_memory;
  s->thread_capacity = capacity;
  s->thread_mask = capacity - 1;
  s->range_sets = (cap_range_set *)((char *)r->table_memory + thread_bytes);
  r->sampler.live_list = (uint32_t *)((char *)r->table_memory + thread_bytes + range_bytes);
  r->sampler.live_list_count = 0;
  atomic_store(&s->current_ranges, 0);
  atomic_store(&s->ranges_stale, 0);
  cap_slots_reset(s, (cap_slot *)r->slot_memory, config->buffer_slots, 0);

  r->task_dir_fd = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (r->task_dir_fd < 0) {
    int error = errno;
    release_memory(s);
    atomic_store(&r->owned, 0);
    cap_set_message(message, message_len, "cannot open /proc/self/task", error);
    return -error;
  }
  r->task_dir_open = 1;
  refresh_ranges(s);

  int installed = cap_signal_install(s->signal_number);
  if (installed != 0) {
    close(r->task_dir_fd);
    r->task_dir_open = 0;
    release_memory(s);
    atomic_store(&r->owned, 0);
    cap_set_message(message, message_len, "sigaction failed", -installed);
    return installed;
  }
  atomic_store(&s->active, 1);
  r->started = 1;
  scan_threads(s);  // arm every current thread; the ticker keeps the set current
  // Room for 40 ms of samples (four drains): every thread's at each wall
  // tick, one per processor per interval of CPU time.
  uint64_t per_drain = 10000000 / config->interval_ns + 1;
  uint64_t sampled = (s->mode == CAP_MODE_CPU || s->mode == CAP_MODE_FLIGHT_CPU) ? (uint64_t)sysconf(_SC_NPROCESSORS_ONLN)
                                                                                : r->live_threads;
  uint64_t wanted = 4 * per_drain * (sampled > 0 ? sampled : 1);
  cap_slots_grow(s, wanted > s->slot_count ? s->slot_count : (uint32_t)wanted);

  // The ticker starts with every signal blocked, so no sample lands on it.
  sigset_t all, previous;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &previous);
  int created = pthread_create(&r->ticker, 0, ticker_main, s);
  pthread_sigmask(SIG_SETMASK, &previous, 0);
  if (created != 0) {
    cap_session_stop(config->mode);
    cap_session_release(config->mode);
    cap_set_message(message, message_len, "cannot start the sampler thread", created);
    return -created;
  }
  r->ticker_running = 1;
  return 0;
}

// MARK: - Stop and release

void cap_session_stop(int32_t mode) {
  int kind = kind_of(mode);
  if (kind < 0) return;
  cap_session *s = &cap_sessions[kind];
  cap_runtime *r = &g_runtimes[kind];
  if (!r->started) return;
  if (r->ticker_running) {
    atomic_store(&r->ticker_stop, 1);
    pthread_join(r->ticker, 0);
    r->ticker_running = 0;
  }
  atomic_store(&s->active, 0);
  for (uint32_t i = 0; i < s->thread_capacity; i++) {
    cap_thread *t = &s->threads[i];
    int32_t tid = atomic_load(&t->tid);
    if (tid > 0) disarm_thread(s, t, tid);
  }
  while (atomic_load(&s->handlers_running) != 0) {
    struct timespec pause = {0, 20000};
    nanosleep(&pause, 0);
  }
  // No waiting for pending signals and no restoring of the old disposition:
  // the handler stays installed and ignores what arrives late.
  if (s->engine == CAP_ENGINE_WALL_TICKER) cap_wall_account_undelivered(s, &r->sampler);
  if (r->task_dir_open) {
    close(r->task_dir_fd);
    r->task_dir_open = 0;
  }
  r->started = 0;
}

void cap_session_release(int32_t mode) {
  int kind = kind_of(mode);
  if (kind < 0 || !atomic_load(&g_runtimes[kind].owned)) return;
  cap_session_stop(mode);
  release_memory(&cap_sessions[kind]);
  atomic_store(&g_runtimes[kind].owned, 0);
}

// MARK: - Drain

size_t cap_session_drain(int32_t mode, void *out_pointer, size_t capacity, int full_scan) {
  int kind = kind_of(mode);
  if (kind < 0) return 0;
  cap_session *s = &cap_sessions[kind];
  if (!atomic_load(&g_runtimes[kind].owned) || s->slots == 0) return 0;
  return cap_slots_drain(s, out_pointer, capacity, full_scan);
}

// MARK: - Introspection

void cap_session_stats(int32_t mode, cap_stats *out) {
  memset(out, 0, sizeof *out);
  int kind = kind_of(mode);
  if (kind < 0) return;
  cap_session *s = &cap_sessions[kind];
  cap_runtime *r = &g_runtimes[kind];
  out->samples_written = atomic_load(&s->samples_written);
  out->samples_dropped = atomic_load(&s->samples_dropped);
  out->complete_samples = atomic_load(&s->complete_samples);
  out->repeat_records = atomic_load(&r->sampler.repeat_records);
  out->ticks = atomic_load(&r->ticks);
  out->missed_ticks = atomic_load(&r->missed_ticks);
  out->signals_sent = atomic_load(&r->sampler.signals_sent);
  out->threads_seen = atomic_load(&r->threads_seen);
  out->threads_failed = atomic_load(&r->threads_failed);
  out->tick_ns_total = atomic_load(&r->tick_ns_total);
  out->maps_refreshes = atomic_load(&r->maps_refreshes);
  out->threads_signal_blocked = atomic_load(&r->sampler.threads_signal_blocked);
  out->undelivered_ticks = atomic_load(&r->sampler.undelivered_ticks);
  out->pending_skips = atomic_load(&r->sampler.pending_skips);
  out->async_stitched = atomic_load(&s->async_stitched);
  out->async_broken = atomic_load(&s->async_broken);
  out->engine = s->engine;
  out->exclude_kernel = r->sampler.exclude_kernel;
}

int cap_session_active(int32_t mode) {
  int kind = kind_of(mode);
  return kind < 0 ? 0 : atomic_load(&g_runtimes[kind].owned);
}

int cap_handler_installed(int signal_number) {
  struct sigaction current;
  if (sigaction(signal_number, 0, &current) != 0) return 0;
  return (current.sa_flags & SA_SIGINFO) != 0 &&
         current.sa_sigaction == (void (*)(int, siginfo_t *, void *))cap_signal_handler;
}

int32_t cap_gettid(void) { return (int32_t)syscall(SYS_gettid); }

// MARK: - Stack headroom (tests and docs)

/// The running session that signals are sent for in tests: cpu, else wall.
static cap_session *any_active_session(void) {
  for (int k = 0; k < CAP_KIND_COUNT; k++) {
    if (atomic_load(&cap_sessions[k].active)) return &cap_sessions[k];
  }
  return 0;
}

uint64_t cap_measure_signal_stack(void) {
  cap_session *s = any_active_session();
  if (s == 0) return 0;
  // Paint 32 KiB of unused stack below this frame (and the red zone), take
  // one signal of the session on this thread, and see how deep the kernel's
  // signal frame plus the handler wrote.
  volatile uint8_t anchor = 0;
  uint8_t *top = (uint8_t *)&anchor - 512;
  enum { CAP_PAINTED = 32768 };
  uint8_t *bottom = top - CAP_PAINTED;
  for (uint8_t *p = bottom; p < top; p++) *(volatile uint8_t *)p = 0xA5;
  siginfo_t info;
  memset(&info, 0, sizeof info);
  info.si_signo = s->signal_number;
  info.si_code = SI_QUEUE;
  info.si_pid = s->pid;
  info.si_uid = (uint32_t)getuid();
  info.si_value.sival_ptr = (void *)(uintptr_t)CAP_COOKIE(atomic_load(&s->generation));
  // Delivered to this thread on the way out of the system call.
  syscall(SYS_rt_tgsigqueueinfo, s->pid, (int32_t)syscall(SYS_gettid), s->signal_number, &info);
  uint8_t *p = bottom;
  while (p < top && *(volatile uint8_t *)p == 0xA5) p++;
  return (uint64_t)(top - p) + 512;
}

uint64_t cap_benchmark_self_signal(uint32_t iterations) {
  cap_session *s = any_active_session();
  if (s == 0) return 0;
  pid_t pid = getpid();
  pid_t tid = (pid_t)syscall(SYS_gettid);
  siginfo_t info;
  memset(&info, 0, sizeof info);
  info.si_signo = s->signal_number;
  info.si_code = SI_QUEUE;
  info.si_pid = pid;
  info.si_uid = getuid();
  info.si_value.sival_ptr = (void *)(uintptr_t)CAP_COOKIE(atomic_load(&s->generation));
  uint64_t start = cap_clock_ns(CLOCK_MONOTONIC);
  for (uint32_t i = 0; i < iterations; i++) {
    syscall(SYS_rt_tgsigqueueinfo, pid, tid, s->signal_number, &info);
  }
  return cap_clock_ns(CLOCK_MONOTONIC) - start;
}

#endif  // CAP_HAVE_SAMPLER
