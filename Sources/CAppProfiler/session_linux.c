// Session lifecycle on Linux: arming, the ticker thread, thread discovery,
// memory-range snapshots and the drain. Nothing here runs in a signal handler.
//
// One runtime per CAP_SESSION_*; what samples is one of the engines behind
// cap_engine (cap_sampler.h), one file each: engine_perf_linux.c,
// engine_timer_linux.c, engine_wall_linux.c, engine_cputick_linux.c. The
// ticker thread here looks for new threads (every 10 ms, up to one interval
// at slow rates) and, for engines with ticks, ticks at randomized intervals
// of the session's mean. choose_engine is the one place an engine is picked;
// start_failed the one way out of a failed start.
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

// MARK: - Process-wide state: one runtime per session (CAP_SESSION_*), each
// guarded by its `owned` flag (one start at a time)

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
  const cap_engine *engine;     // what arms, ticks and finishes
  int fixed_interval;           // ticks exactly interval_ns apart (thread dumps)
  // The ticker's scan buffers (zero pages until a scan touches them).
  int32_t scan_tids[CAP_SCAN_CAPACITY];
  int32_t new_tids[CAP_SCAN_CAPACITY];
} cap_runtime;

// Zero-initialized (.bss): 2.5 MiB of scan buffers that take neither file
// space nor memory until a profile's ticker touches them.
static cap_runtime g_runtimes[CAP_SESSION_COUNT];
/// Session generations are unique across sessions: a cookie names its session.
static _Atomic uint32_t g_generations;

static cap_runtime *runtime_of(cap_session *s) { return &g_runtimes[s - cap_sessions]; }

/// 1 when `session` names one of the CAP_SESSION_*.
static int valid_session(int32_t session) { return session >= 0 && session < CAP_SESSION_COUNT; }

const cap_engine *cap_engine_of(int32_t id) {
  switch (id) {
  case CAP_ENGINE_PERF_EVENT: return &cap_engine_perf;
  case CAP_ENGINE_POSIX_TIMER: return &cap_engine_timer;
  case CAP_ENGINE_WALL_TICKER: return &cap_engine_wall;
  case CAP_ENGINE_CPU_TICKER: return &cap_engine_cputick;
  default: return 0;
  }
}

const char *cap_engine_name(int32_t engine, int32_t exclude_kernel) {
  if (engine == CAP_ENGINE_PERF_EVENT) {
    return exclude_kernel ? "perf_event(task-clock, user only)" : "perf_event(task-clock, user+kernel)";
  }
  const cap_engine *known = cap_engine_of(engine);
  return known ? known->name : "unknown";
}

/// 1 when `tid` is one of the profiler's ticker threads (never sampled).
static int is_ticker(int32_t tid) {
  for (int k = 0; k < CAP_SESSION_COUNT; k++) {
    if (atomic_load(&g_runtimes[k].ticker_tid) == tid) return 1;
  }
  return 0;
}

// MARK: - Arming one thread (the engines: engine_*_linux.c)

static int arm_thread(cap_session *s, cap_thread *t, int32_t tid) {
  cap_runtime *r = runtime_of(s);
  return r->engine->arm(s, &r->sampler, t, tid);
}

/// Every engine's per-thread resources (a perf event, a timer) are released
/// here, then the engine does what else it needs.
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
  cap_runtime *r = runtime_of(s);
  if (r->engine->disarm) r->engine->disarm(s, &r->sampler, t, tid);
}

// MARK: - Memory ranges (memory_ranges_linux.c)

static void refresh_ranges(cap_session *s) {
  cap_ranges_refresh(s);
  CAP_COUNT(s, maps_refreshes, 1);
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
      CAP_COUNT(s, threads_failed, 1);
      continue;
    }
    cap_thread *t = cap_thread_insert(s, tid);
    if (t == 0) {
      CAP_COUNT(s, threads_failed, 1);
      continue;
    }
    t->seen_generation = generation;
    r->live_threads++;
    if (arm_thread(s, t, tid) != 0) {
      // Most often the thread exited between the listing and now. Keep the
      // entry (tombstoned on the next scan) so it is not retried every scan.
      CAP_COUNT(s, threads_failed, 1);
    } else {
      CAP_COUNT(s, threads_seen, 1);
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
  const cap_engine *engine = r->engine;
  uint64_t scan_period = s->interval_ns < CAP_SCAN_PERIOD_NS       ? CAP_SCAN_PERIOD_NS
                         : s->interval_ns > CAP_MAX_SCAN_PERIOD_NS ? CAP_MAX_SCAN_PERIOD_NS
                                                                   : s->interval_ns;
  uint64_t period = engine->tick ? s->interval_ns : scan_period;
  uint64_t deadline = cap_clock_ns(CLOCK_MONOTONIC);
  // Ticks at randomized intervals of the same mean (cap_jitter.h); a
  // thread dump's one tick stays at its fixed time (the caller waits for it).
  int jittered = engine->tick && !r->fixed_interval;
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
    if (engine->tick) {
      engine->tick(s, &r->sampler, now);
      uint64_t done = cap_clock_ns(CLOCK_MONOTONIC);
      CAP_COUNT(s, ticks, 1);
      CAP_COUNT(s, tick_ns_total, done - now);
    }
    uint64_t after = cap_clock_ns(CLOCK_MONOTONIC);
    if (after > deadline + period) {
      // Fell behind by more than one period: skip, count, and re-anchor so
      // the rate does not burst to catch up.
      uint64_t missed = (after - deadline) / period;
      CAP_COUNT(s, missed_ticks, missed);
      deadline += missed * period;
    }
  }
  // Threads stay armed until stop disarms them (the engine's disarm
  // writes what a thread still holds, e.g. the wall ticker's open runs).
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

/// The engine of a session (one place): wall sessions the wall ticker; cpu
/// sessions the one asked for, or automatically POSIX CPU timers at
/// intervals of a tick or more and perf events below (the CPU ticker —
/// no tick-locked phases, ~9 % at 1 kHz on the HTTP benchmark against perf
/// events' ~30 % — only by name: it puts part of a lightly running
/// thread's samples on its wait when it shares a core with the ticker,
/// docs/sampling.md). Where perf events are refused, POSIX timers, unless
/// perf events were asked for by name. NULL and -errno when none can run.
static const cap_engine *choose_engine(const cap_config *config, cap_session *s, cap_sampler *sampler, int *error) {
  *error = 0;
  if (config->mode == CAP_MODE_WALL) return &cap_engine_wall;
  if (config->mode != CAP_MODE_CPU) {
    *error = -EINVAL;
    return 0;
  }
  const cap_engine *wanted = config->engine == CAP_ENGINE_AUTO
                                 ? (config->interval_ns >= cap_scheduler_tick_ns() ? &cap_engine_timer : &cap_engine_perf)
                                 : cap_engine_of(config->engine);
  if (wanted == 0 || wanted == &cap_engine_wall) {
    *error = -EINVAL;
    return 0;
  }
  // Perf events' signals carry no cookie: the handler gives them to the cpu
  // session, so no other session may arm them.
  if (wanted == &cap_engine_perf && config->session != CAP_SESSION_CPU) {
    if (config->engine != CAP_ENGINE_AUTO) {
      *error = -EINVAL;
      return 0;
    }
    wanted = &cap_engine_timer;
  }
  int probe = wanted->probe ? wanted->probe(s, sampler) : 0;
  if (probe == 0) return wanted;
  if (config->engine != CAP_ENGINE_AUTO) {
    *error = probe;
    return 0;
  }
  return &cap_engine_timer;
}

/// The one way out of a start that failed: undoes what was done (in any
/// state: each step checks its own), frees the session, fills `message`.
static int start_failed(int32_t session, const char *why, int error, char *message, size_t message_len) {
  cap_session_release(session);
  cap_set_message(message, message_len, why, error < 0 ? -error : error);
  return error < 0 ? error : -error;
}

int cap_session_start(const cap_config *config, char *message, size_t message_len) {
  if (!valid_session(config->session)) {
    cap_set_message(message, message_len, "invalid session configuration", 0);
    return -EINVAL;
  }
  cap_session *s = &cap_sessions[config->session];
  cap_runtime *r = &g_runtimes[config->session];
  int expected = 0;
  if (!atomic_compare_exchange_strong(&r->owned, &expected, 1)) {
    cap_set_message(message, message_len, "a profiling session of this kind is already running", 0);
    return -EBUSY;
  }
  if (config->interval_ns < CAP_MIN_INTERVAL_NS || config->interval_ns > CAP_MAX_INTERVAL_NS ||
      config->buffer_slots < CAP_MIN_BUFFER_SLOTS || config->buffer_slots > CAP_MAX_BUFFER_SLOTS ||
      config->max_threads < 1 || config->max_threads > CAP_MAX_THREADS || config->signal_number <= 0 ||
      config->signal_number >= NSIG) {
    atomic_store(&r->owned, 0);
    cap_set_message(message, message_len, "invalid session configuration", 0);
    return -EINVAL;
  }

  atomic_store(&s->active, 0);
  atomic_store(&s->generation, atomic_fetch_add(&g_generations, 1) + 1);
  atomic_store_explicit(&s->pid, getpid(), memory_order_relaxed);
  cap_counters_clear(&s->counters);
  r->sampler.uid = (uint32_t)getuid();
  r->sampler.exclude_kernel = config->exclude_kernel ? 1 : 0;
  r->fixed_interval = config->fixed_interval ? 1 : 0;
  s->mode = config->mode;
  s->signal_number = config->signal_number;
  s->interval_ns = config->interval_ns;
  s->idle_threshold_ns = config->interval_ns / 4 < 50000 ? config->interval_ns / 4 : 50000;
  s->unwind_images = config->unwind_images;
  s->unwind_image_count = config->unwind_images ? config->unwind_image_count : 0;
  s->async = config->async;
  r->max_threads = config->max_threads;
  r->live_threads = 0;
  r->generation = 0;
  atomic_store(&r->ticker_stop, 0);
  atomic_store(&r->ticker_tid, 0);

  int error = 0;
  r->engine = choose_engine(config, s, &r->sampler, &error);
  if (r->engine == 0) {
    return start_failed(config->session, error == -EINVAL ? "invalid session configuration" : "perf_event_open refused",
                        error, message, message_len);
  }
  s->engine = r->engine->id;

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
    return start_failed(config->session, "mmap of the sample buffer failed", errno, message, message_len);
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
    return start_failed(config->session, "cannot open /proc/self/task", errno, message, message_len);
  }
  r->task_dir_open = 1;
  refresh_ranges(s);

  int installed = cap_signal_install(s->signal_number);
  if (installed != 0) return start_failed(config->session, "sigaction failed", installed, message, message_len);
  atomic_store(&s->active, 1);
  r->started = 1;
  scan_threads(s);  // arm every current thread; the ticker keeps the set current
  // Room for 40 ms of samples (four drains): every thread's at each wall
  // tick, one per processor per interval of CPU time.
  uint64_t per_drain = 10000000 / config->interval_ns + 1;
  uint64_t sampled = s->mode == CAP_MODE_CPU ? (uint64_t)sysconf(_SC_NPROCESSORS_ONLN) : r->live_threads;
  uint64_t wanted = 4 * per_drain * (sampled > 0 ? sampled : 1);
  cap_slots_grow(s, wanted > s->slot_count ? s->slot_count : (uint32_t)wanted);

  // The ticker starts with every signal blocked, so no sample lands on it.
  sigset_t all, previous;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &previous);
  int created = pthread_create(&r->ticker, 0, ticker_main, s);
  pthread_sigmask(SIG_SETMASK, &previous, 0);
  if (created != 0) return start_failed(config->session, "cannot start the sampler thread", created, message, message_len);
  r->ticker_running = 1;
  return 0;
}

// MARK: - Stop and release

void cap_session_stop(int32_t session) {
  if (!valid_session(session)) return;
  cap_session *s = &cap_sessions[session];
  cap_runtime *r = &g_runtimes[session];
  if (r->started) {
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
    if (r->engine->finish) r->engine->finish(s, &r->sampler);
    r->started = 0;
  }
  if (r->task_dir_open) {
    close(r->task_dir_fd);
    r->task_dir_open = 0;
  }
}

void cap_session_release(int32_t session) {
  if (!valid_session(session) || !atomic_load(&g_runtimes[session].owned)) return;
  cap_session_stop(session);
  release_memory(&cap_sessions[session]);
  atomic_store(&g_runtimes[session].owned, 0);
}

// MARK: - Drain

size_t cap_session_drain(int32_t session, void *out_pointer, size_t capacity, int full_scan) {
  if (!valid_session(session)) return 0;
  cap_session *s = &cap_sessions[session];
  if (!atomic_load(&g_runtimes[session].owned) || s->slots == 0) return 0;
  return cap_slots_drain(s, out_pointer, capacity, full_scan);
}

// MARK: - Introspection

void cap_session_stats(int32_t session, cap_stats *out) {
  memset(out, 0, sizeof *out);
  if (!valid_session(session)) return;
  cap_session *s = &cap_sessions[session];
  cap_counters_copy(&s->counters, out);
  out->engine = s->engine;
  out->exclude_kernel = g_runtimes[session].sampler.exclude_kernel;
}

int cap_session_active(int32_t session) {
  return valid_session(session) ? atomic_load(&g_runtimes[session].owned) : 0;
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
  for (int k = 0; k < CAP_SESSION_COUNT; k++) {
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
