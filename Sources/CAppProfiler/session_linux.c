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
#include "cap_session.h"

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

// MARK: - Process-wide state (guarded by g_owned: one session at a time)

static _Atomic int g_owned;            // 1 between start and release
static int g_started;                  // sampling armed and not yet stopped
static uint32_t g_uid;                 // getuid(), for the ticker's siginfo
static pthread_t g_ticker;
static int g_ticker_running;
static _Atomic int g_ticker_stop;
static _Atomic int32_t g_ticker_tid;
static int g_task_dir_fd = -1;
static uint32_t g_generation;
static uint32_t g_max_threads;
static uint32_t g_live_threads;
// Dense list of table indices of live threads, rebuilt by each scan, so a
// wall tick touches only the entries of threads that exist.
static uint32_t *g_live_list;
static uint32_t g_live_list_count;
static int g_exclude_kernel;
static void *g_table_memory;
static size_t g_table_bytes;
static void *g_slot_memory;
static size_t g_slot_bytes;

// Ticker-only counters, published through cap_session_stats.
static _Atomic uint64_t g_repeat_records, g_ticks, g_missed_ticks, g_signals_sent;
static _Atomic uint64_t g_threads_seen, g_threads_failed, g_tick_ns_total, g_maps_refreshes;
static _Atomic uint64_t g_threads_signal_blocked, g_undelivered_ticks, g_pending_skips;

static uint64_t now_ns(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void set_message(char *message, size_t len, const char *text, int error) {
  if (message == 0 || len == 0) return;
  if (error != 0) {
    snprintf(message, len, "%s: %s", text, strerror(error));
  } else {
    snprintf(message, len, "%s", text);
  }
}

/// The CPU clock of another thread of this process (Linux encoding of
/// MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED)). Unlike schedstat, reading it
/// includes the current slice of a thread that is running right now.
static clockid_t thread_cpu_clock(int32_t tid) {
  return (clockid_t)((~(uint32_t)tid) << 3) | 6;
}

static int read_thread_cpu(int32_t tid, uint64_t *out) {
  struct timespec ts;
  if (clock_gettime(thread_cpu_clock(tid), &ts) != 0) return -1;
  *out = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
  return 0;
}

// MARK: - Memory-range snapshots (stack bounds for the handler)

/// Reads /proc/self/maps into the set the handler is not using, keeping
/// readable+writable mappings (every thread stack is one) merged when adjacent.
/// A line looks like:
///   7f2c5a1ff000-7f2c5a9ff000 rw-p 00000000 00:00 0
void cap_ranges_refresh(cap_session *s) {
  uint32_t next = (atomic_load(&s->current_ranges) + 1) & 1;
  cap_range_set *set = &s->range_sets[next];
  while (atomic_load(&set->readers) != 0) {
    struct timespec pause = {0, 20000};
    nanosleep(&pause, 0);
  }
  int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  size_t capacity = 1 << 16, used = 0;
  char *text = malloc(capacity);
  while (text != 0) {
    if (capacity - used < 4096) {
      char *grown = realloc(text, capacity * 2);
      if (grown == 0) break;
      text = grown;
      capacity *= 2;
    }
    ssize_t n = read(fd, text + used, capacity - used - 1);
    if (n <= 0) break;
    used += (size_t)n;
  }
  close(fd);
  if (text == 0) return;
  text[used] = 0;

  uint32_t count = 0;
  char *line = text;
  while (*line != 0 && count < CAP_MAX_RANGES) {
    char *end_of_line = strchr(line, '\n');
    if (end_of_line != 0) *end_of_line = 0;
    unsigned long long start = 0, end = 0;
    char perms[8] = {0};
    if (sscanf(line, "%llx-%llx %7s", &start, &end, perms) == 3 && perms[0] == 'r' &&
        perms[1] == 'w') {
      if (count > 0 && set->ranges[count - 1].end == start) {
        set->ranges[count - 1].end = end;
      } else {
        set->ranges[count].start = start;
        set->ranges[count].end = end;
        count++;
      }
    }
    if (end_of_line == 0) break;
    line = end_of_line + 1;
  }
  free(text);
  set->count = count;
  atomic_store(&s->current_ranges, next);
  atomic_store(&s->ranges_stale, 0);
}

static void refresh_ranges(cap_session *s) {
  cap_ranges_refresh(s);
  atomic_fetch_add(&g_maps_refreshes, 1);
}

// MARK: - Thread table

static cap_thread *table_insert(cap_session *s, int32_t tid) {
  uint32_t index = ((uint32_t)tid * 2654435761u) & s->thread_mask;
  for (uint32_t probe = 0; probe < CAP_MAX_PROBES; probe++) {
    cap_thread *t = &s->threads[(index + probe) & s->thread_mask];
    int32_t current = atomic_load(&t->tid);
    if (current == CAP_TID_EMPTY || current == CAP_TID_TOMBSTONE) {
      atomic_store(&t->perf_fd, -1);
      atomic_store(&t->pending, 0);
      atomic_store(&t->pending_flags, 0);
      atomic_store(&t->handler_cpu_ns, 0);
      t->last_cpu_ns = 0;
      t->repeat_count = 0;
      t->repeat_first_ns = 0;
      t->repeat_flags = 0;
      t->has_sample = 0;
      t->has_timer = 0;
      atomic_store_explicit(&t->tid, tid, memory_order_release);
      return t;
    }
  }
  return 0;
}

// MARK: - Wall repeat runs

static void write_record(cap_session *s, int32_t tid, uint64_t timestamp, uint64_t weight,
                         uint16_t flags) {
  cap_slot *slot = cap_slot_acquire(s);
  if (slot == 0) return;
  slot->header.timestamp_ns = timestamp;
  slot->header.weight = weight;
  slot->header.tid = tid;
  slot->header.depth = 0;
  slot->header.flags = flags;
  cap_slot_commit(slot);
  atomic_fetch_add(&g_repeat_records, 1);
}

static void flush_repeats(cap_session *s, cap_thread *t, int32_t tid) {
  if (t->repeat_count == 0) return;
  write_record(s, tid, t->repeat_first_ns, t->repeat_count,
               (uint16_t)(CAP_SAMPLE_REPEAT | t->repeat_flags));
  t->repeat_count = 0;
}

/// Longest run of unchanged ticks kept in one record, so the timeline keeps
/// a resolution of at least 100 intervals.
#define CAP_MAX_RUN 100

static void add_repeat(cap_session *s, cap_thread *t, int32_t tid, uint64_t now,
                       uint32_t flags) {
  if (t->repeat_count > 0 && (t->repeat_flags != flags || t->repeat_count >= CAP_MAX_RUN)) {
    flush_repeats(s, t, tid);
  }
  if (t->repeat_count == 0) {
    t->repeat_first_ns = now;
    t->repeat_flags = flags;
  }
  t->repeat_count++;
}

// MARK: - Arming one thread

static int arm_perf(cap_session *s, cap_thread *t, int32_t tid) {
  struct perf_event_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.type = PERF_TYPE_SOFTWARE;
  attr.size = sizeof attr;
  attr.config = PERF_COUNT_SW_TASK_CLOCK;
  attr.sample_period = s->interval_ns;
  attr.disabled = 1;
  attr.exclude_hv = 1;
  attr.exclude_kernel = g_exclude_kernel ? 1 : 0;
  int fd = (int)syscall(SYS_perf_event_open, &attr, tid, -1, -1, PERF_FLAG_FD_CLOEXEC);
  if (fd < 0 && !g_exclude_kernel && (errno == EACCES || errno == EPERM)) {
    // perf_event_paranoid 2 forbids kernel time for unprivileged users.
    g_exclude_kernel = 1;
    attr.exclude_kernel = 1;
    fd = (int)syscall(SYS_perf_event_open, &attr, tid, -1, -1, PERF_FLAG_FD_CLOEXEC);
  }
  if (fd < 0) return -errno;
  // From now on a SIGPOLL-coded signal with si_fd is ours (see signal_handler.c).
  atomic_store(&cap_perf_events_used, 1);
  struct f_owner_ex owner = {F_OWNER_TID, tid};
  if (fcntl(fd, F_SETOWN_EX, &owner) != 0 || fcntl(fd, F_SETSIG, s->signal_number) != 0 ||
      fcntl(fd, F_SETFL, O_ASYNC) != 0) {
    int error = errno;
    close(fd);
    return -error;
  }
  atomic_store_explicit(&t->perf_fd, fd, memory_order_release);
  ioctl(fd, PERF_EVENT_IOC_RESET, 0);
  if (ioctl(fd, PERF_EVENT_IOC_REFRESH, 1) != 0) {
    int error = errno;
    atomic_store(&t->perf_fd, -1);
    close(fd);
    return -error;
  }
  return 0;
}

static int arm_timer(cap_session *s, cap_thread *t, int32_t tid) {
  struct sigevent event;
  memset(&event, 0, sizeof event);
  event.sigev_notify = SIGEV_THREAD_ID;
  event.sigev_signo = s->signal_number;
  event.sigev_value.sival_ptr = (void *)(uintptr_t)CAP_COOKIE(atomic_load(&s->generation));
  event._sigev_un._tid = tid;
  if (timer_create(thread_cpu_clock(tid), &event, &t->timer) != 0) return -errno;
  struct itimerspec spec;
  spec.it_interval.tv_sec = (time_t)(s->interval_ns / 1000000000ull);
  spec.it_interval.tv_nsec = (long)(s->interval_ns % 1000000000ull);
  spec.it_value = spec.it_interval;
  if (timer_settime(t->timer, 0, &spec, 0) != 0) {
    int error = errno;
    timer_delete(t->timer);
    return -error;
  }
  t->has_timer = 1;
  return 0;
}

static int arm_thread(cap_session *s, cap_thread *t, int32_t tid) {
  switch (s->engine) {
  case CAP_ENGINE_PERF_EVENT:
    return arm_perf(s, t, tid);
  case CAP_ENGINE_POSIX_TIMER:
    return arm_timer(s, t, tid);
  case CAP_ENGINE_WALL_TICKER: {
    uint64_t cpu = 0;
    if (read_thread_cpu(tid, &cpu) != 0) return -errno;
    t->last_cpu_ns = cpu;
    return 0;
  }
  }
  return -EINVAL;
}

static void disarm_thread(cap_session *s, cap_thread *t, int32_t tid) {
  int fd = atomic_exchange(&t->perf_fd, -1);
  if (fd >= 0) {
    ioctl(fd, PERF_EVENT_IOC_DISABLE, 0);
    close(fd);
  }
  if (t->has_timer) {
    timer_delete(t->timer);
    t->has_timer = 0;
  }
  if (s->engine == CAP_ENGINE_WALL_TICKER) flush_repeats(s, t, tid);
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
static uint32_t list_tasks(int32_t *tids, uint32_t capacity) {
  if (g_task_dir_fd < 0) return 0;
  if (lseek(g_task_dir_fd, 0, SEEK_SET) != 0) return 0;
  char buffer[16384];
  uint32_t count = 0;
  for (;;) {
    long n = syscall(SYS_getdents64, g_task_dir_fd, buffer, sizeof buffer);
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

#define CAP_SCAN_CAPACITY 65536
static int32_t g_scan_tids[CAP_SCAN_CAPACITY];
static int32_t g_new_tids[CAP_SCAN_CAPACITY];

/// Arms threads that appeared and disarms threads that are gone.
static void scan_threads(cap_session *s) {
  uint32_t count = list_tasks(g_scan_tids, CAP_SCAN_CAPACITY);
  uint32_t generation = ++g_generation;
  int32_t ticker = atomic_load(&g_ticker_tid);
  uint32_t new_count = 0;
  for (uint32_t i = 0; i < count; i++) {
    int32_t tid = g_scan_tids[i];
    if (tid == ticker) continue;
    cap_thread *t = cap_thread_find(s, tid);
    if (t != 0) {
      t->seen_generation = generation;
    } else {
      g_new_tids[new_count++] = tid;
    }
  }
  // A new thread's stack was mapped before the thread existed: take a fresh
  // snapshot before the first signal can reach it.
  if (new_count > 0 || atomic_load(&s->ranges_stale)) refresh_ranges(s);

  for (uint32_t i = 0; i < s->thread_capacity; i++) {
    cap_thread *t = &s->threads[i];
    int32_t tid = atomic_load(&t->tid);
    if (tid > 0 && t->seen_generation != generation) {
      disarm_thread(s, t, tid);
      atomic_store(&t->tid, CAP_TID_TOMBSTONE);
      g_live_threads--;
    }
  }
  for (uint32_t i = 0; i < new_count; i++) {
    int32_t tid = g_new_tids[i];
    if (g_live_threads >= g_max_threads) {
      atomic_fetch_add(&g_threads_failed, 1);
      continue;
    }
    cap_thread *t = table_insert(s, tid);
    if (t == 0) {
      atomic_fetch_add(&g_threads_failed, 1);
      continue;
    }
    t->seen_generation = generation;
    g_live_threads++;
    if (arm_thread(s, t, tid) != 0) {
      // Most often the thread exited between the listing and now. Keep the
      // entry (tombstoned on the next scan) so it is not retried every scan.
      atomic_fetch_add(&g_threads_failed, 1);
    } else {
      atomic_fetch_add(&g_threads_seen, 1);
    }
  }
  uint32_t live = 0;
  for (uint32_t i = 0; i < s->thread_capacity && live < g_max_threads; i++) {
    if (atomic_load_explicit(&s->threads[i].tid, memory_order_relaxed) > 0) g_live_list[live++] = i;
  }
  g_live_list_count = live;
}

// MARK: - Wall tick

/// 1 when `tid` has `signal_number` in its blocked mask (SigBlk of
/// /proc/self/task/<tid>/status, a hex mask whose bit n-1 is signal n).
static int thread_blocks_signal(int32_t tid, int signal_number) {
  char path[64];
  snprintf(path, sizeof path, "/proc/self/task/%d/status", tid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char text[4096];
  ssize_t n = read(fd, text, sizeof text - 1);
  close(fd);
  if (n <= 0) return 0;
  text[n] = 0;
  const char *field = strstr(text, "SigBlk:");
  if (field == 0) return 0;
  return (strtoull(field + 7, 0, 16) >> (signal_number - 1)) & 1;
}

/// The wall ticker's signal: SI_QUEUE with our cookie, so the handler can
/// tell it from a kill() or tgkill() of the app.
static int send_tick_signal(cap_session *s, pid_t pid, int32_t tid) {
  siginfo_t info;
  memset(&info, 0, sizeof info);
  info.si_signo = s->signal_number;
  info.si_code = SI_QUEUE;
  info.si_pid = pid;
  info.si_uid = g_uid;
  info.si_value.sival_ptr = (void *)(uintptr_t)CAP_COOKIE(atomic_load(&s->generation));
  return (int)syscall(SYS_rt_tgsigqueueinfo, pid, tid, s->signal_number, &info);
}

static void wall_tick(cap_session *s, uint64_t now) {
  pid_t pid = s->pid;
  for (uint32_t n = 0; n < g_live_list_count; n++) {
    cap_thread *t = &s->threads[g_live_list[n]];
    int32_t tid = atomic_load_explicit(&t->tid, memory_order_relaxed);
    if (tid <= 0) continue;
    if (atomic_load_explicit(&t->pending, memory_order_acquire)) {
      // Signalled but its handler has not run yet: runnable and waiting for
      // a CPU (the previous stack stands), or blocking the signal (checked
      // once per stretch; charged to [signal blocked]). Never signalled again
      // while the signal is pending: a second one would merge into it anyway.
      atomic_fetch_add_explicit(&g_pending_skips, 1, memory_order_relaxed);
      if (t->pending_ticks++ == 0 && thread_blocks_signal(tid, s->signal_number)) {
        t->signal_blocked = 1;
        atomic_fetch_add(&g_threads_signal_blocked, 1);
      }
      if (t->signal_blocked) {
        atomic_fetch_add_explicit(&g_undelivered_ticks, 1, memory_order_relaxed);
        add_repeat(s, t, tid, now, CAP_SAMPLE_UNDELIVERED | CAP_SAMPLE_SIGNAL_BLOCKED);
      } else {
        add_repeat(s, t, tid, now, 0);
      }
      continue;
    }
    uint64_t cpu = 0;
    if (read_thread_cpu(tid, &cpu) != 0) continue;  // gone; the next scan removes it
    uint64_t baseline = t->last_cpu_ns;
    uint64_t after_handler = atomic_load_explicit(&t->handler_cpu_ns, memory_order_relaxed);
    if (after_handler > baseline) baseline = after_handler;
    int ran = cpu > baseline + s->idle_threshold_ns;
    t->last_cpu_ns = cpu;
    if (t->has_sample && !ran) {
      add_repeat(s, t, tid, now, CAP_SAMPLE_IDLE);
      continue;
    }
    flush_repeats(s, t, tid);
    atomic_store_explicit(&t->pending_flags, ran ? 0u : (uint32_t)CAP_SAMPLE_IDLE,
                          memory_order_relaxed);
    t->pending_ticks = 0;
    t->signal_blocked = 0;
    t->pending_since_ns = now;
    atomic_store_explicit(&t->pending, 1, memory_order_release);
    if (send_tick_signal(s, pid, tid) == 0) {
      t->has_sample = 1;
      atomic_fetch_add_explicit(&g_signals_sent, 1, memory_order_relaxed);
    } else {
      atomic_store(&t->pending, 0);
    }
  }
}

/// After the last tick: a thread whose last signal was never handled gets a
/// record for that tick, so it is listed (never silently dropped) — as
/// [signal blocked] when it blocks the signal, else as its previous stack.
static void account_undelivered(cap_session *s) {
  for (uint32_t i = 0; i < s->thread_capacity; i++) {
    cap_thread *t = &s->threads[i];
    int32_t tid = atomic_load(&t->tid);
    if (tid <= 0 || !atomic_load(&t->pending)) continue;
    flush_repeats(s, t, tid);
    uint16_t flags = 0;
    if (t->signal_blocked || thread_blocks_signal(tid, s->signal_number)) {
      if (!t->signal_blocked) atomic_fetch_add(&g_threads_signal_blocked, 1);
      flags = CAP_SAMPLE_UNDELIVERED | CAP_SAMPLE_SIGNAL_BLOCKED;
      atomic_fetch_add(&g_undelivered_ticks, 1);
    }
    write_record(s, tid, t->pending_since_ns, 1, (uint16_t)(CAP_SAMPLE_REPEAT | flags));
    atomic_store(&t->pending, 0);
  }
}

// MARK: - Ticker thread

#define CAP_SCAN_PERIOD_NS 10000000ull  // new threads are picked up within 10 ms

static void *ticker_main(void *argument) {
  cap_session *s = (cap_session *)argument;
  atomic_store(&g_ticker_tid, (int32_t)syscall(SYS_gettid));
  pthread_setname_np(pthread_self(), "app-profiler");
  int wall = s->engine == CAP_ENGINE_WALL_TICKER;
  uint64_t period = wall ? s->interval_ns : CAP_SCAN_PERIOD_NS;
  uint64_t deadline = now_ns(CLOCK_MONOTONIC);
  uint64_t last_scan = deadline;
  while (!atomic_load(&g_ticker_stop)) {
    deadline += period;
    struct timespec until = {(time_t)(deadline / 1000000000ull),
                             (long)(deadline % 1000000000ull)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, 0) == EINTR) {
    }
    if (atomic_load(&g_ticker_stop)) break;
    uint64_t now = now_ns(CLOCK_MONOTONIC);
    if (now - last_scan >= CAP_SCAN_PERIOD_NS || atomic_load(&s->ranges_stale)) {
      scan_threads(s);
      last_scan = now;
    }
    if (wall) {
      wall_tick(s, now);
      uint64_t done = now_ns(CLOCK_MONOTONIC);
      atomic_fetch_add_explicit(&g_ticks, 1, memory_order_relaxed);
      atomic_fetch_add_explicit(&g_tick_ns_total, done - now, memory_order_relaxed);
    }
    uint64_t after = now_ns(CLOCK_MONOTONIC);
    if (after > deadline + period) {
      // Fell behind by more than one period: skip, count, and re-anchor so
      // the rate does not burst to catch up.
      uint64_t missed = (after - deadline) / period;
      atomic_fetch_add(&g_missed_ticks, missed);
      deadline += missed * period;
    }
  }
  if (wall) {
    for (uint32_t i = 0; i < s->thread_capacity; i++) {
      cap_thread *t = &s->threads[i];
      int32_t tid = atomic_load(&t->tid);
      if (tid > 0) flush_repeats(s, t, tid);
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

static int probe_perf(cap_session *s) {
  struct perf_event_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.type = PERF_TYPE_SOFTWARE;
  attr.size = sizeof attr;
  attr.config = PERF_COUNT_SW_TASK_CLOCK;
  attr.sample_period = s->interval_ns;
  attr.disabled = 1;
  attr.exclude_hv = 1;
  attr.exclude_kernel = g_exclude_kernel ? 1 : 0;
  int fd = (int)syscall(SYS_perf_event_open, &attr, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
  if (fd < 0 && !g_exclude_kernel) {
    g_exclude_kernel = 1;
    attr.exclude_kernel = 1;
    fd = (int)syscall(SYS_perf_event_open, &attr, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
  }
  if (fd < 0) return -errno;
  close(fd);
  return 0;
}

static void release_memory(void) {
  cap_session *s = &cap_global_session;
  if (g_table_memory != 0) munmap(g_table_memory, g_table_bytes);
  if (g_slot_memory != 0) munmap(g_slot_memory, g_slot_bytes);
  g_table_memory = 0;
  g_slot_memory = 0;
  s->unwind_images = 0;
  s->unwind_image_count = 0;
  g_live_list = 0;
  g_live_list_count = 0;
  s->threads = 0;
  s->range_sets = 0;
  s->slots = 0;
}

int cap_session_start(const cap_config *config, char *message, size_t message_len) {
  int expected = 0;
  if (!atomic_compare_exchange_strong(&g_owned, &expected, 1)) {
    set_message(message, message_len, "a profiling session is already running", 0);
    return -EBUSY;
  }
  cap_session *s = &cap_global_session;
  if (config->interval_ns < 10000 || config->buffer_slots < 16 || config->max_threads < 1 ||
      config->signal_number <= 0 || config->signal_number >= NSIG ||
      (config->mode != CAP_MODE_CPU && config->mode != CAP_MODE_WALL)) {
    atomic_store(&g_owned, 0);
    set_message(message, message_len, "invalid session configuration", 0);
    return -EINVAL;
  }

  atomic_store(&s->active, 0);
  atomic_fetch_add(&s->generation, 1);
  s->pid = getpid();
  g_uid = (uint32_t)getuid();
  s->mode = config->mode;
  s->signal_number = config->signal_number;
  s->interval_ns = config->interval_ns;
  s->idle_threshold_ns = config->interval_ns / 4 < 50000 ? config->interval_ns / 4 : 50000;
  s->unwind_images = config->unwind_images;
  s->unwind_image_count = config->unwind_images ? config->unwind_image_count : 0;
  atomic_store(&s->complete_samples, 0);
  g_exclude_kernel = config->exclude_kernel ? 1 : 0;
  g_max_threads = config->max_threads;
  g_live_threads = 0;
  g_generation = 0;
  atomic_store(&g_ticker_stop, 0);
  atomic_store(&g_ticker_tid, 0);
  atomic_store(&s->samples_written, 0);
  atomic_store(&s->samples_dropped, 0);
  atomic_store(&g_repeat_records, 0);
  atomic_store(&g_ticks, 0);
  atomic_store(&g_missed_ticks, 0);
  atomic_store(&g_signals_sent, 0);
  atomic_store(&g_threads_seen, 0);
  atomic_store(&g_threads_failed, 0);
  atomic_store(&g_tick_ns_total, 0);
  atomic_store(&g_maps_refreshes, 0);
  atomic_store(&g_threads_signal_blocked, 0);
  atomic_store(&g_undelivered_ticks, 0);
  atomic_store(&g_pending_skips, 0);

  if (config->mode == CAP_MODE_WALL) {
    s->engine = CAP_ENGINE_WALL_TICKER;
  } else if (config->engine == CAP_ENGINE_POSIX_TIMER ||
             (config->engine == CAP_ENGINE_AUTO && config->interval_ns >= cap_scheduler_tick_ns())) {
    s->engine = CAP_ENGINE_POSIX_TIMER;
  } else {
    int probe = probe_perf(s);
    if (probe == 0) {
      s->engine = CAP_ENGINE_PERF_EVENT;
    } else if (config->engine == CAP_ENGINE_PERF_EVENT) {
      atomic_store(&g_owned, 0);
      set_message(message, message_len, "perf_event_open refused", -probe);
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
  g_table_bytes = thread_bytes + range_bytes + live_bytes;
  g_table_memory = map_zeroed(g_table_bytes);
  g_slot_bytes = (size_t)config->buffer_slots * sizeof(cap_slot);
  g_slot_memory = map_zeroed(g_slot_bytes);
  if (g_table_memory == 0 || g_slot_memory == 0) {
    int error = errno;
    release_memory();
    atomic_store(&g_owned, 0);
    set_message(message, message_len, "mmap of the sample buffer failed", error);
    return -error;
  }
  s->threads = (cap_thread *)g_table_memory;
  s->thread_capacity = capacity;
  s->thread_mask = capacity - 1;
  s->range_sets = (cap_range_set *)((char *)g_table_memory + thread_bytes);
  g_live_list = (uint32_t *)((char *)g_table_memory + thread_bytes + range_bytes);
  g_live_list_count = 0;
  atomic_store(&s->current_ranges, 0);
  atomic_store(&s->ranges_stale, 0);
  s->slots = (cap_slot *)g_slot_memory;
  s->slot_count = config->buffer_slots;
  atomic_store(&s->write_cursor, 0);
  s->read_cursor = 0;

  g_task_dir_fd = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (g_task_dir_fd < 0) {
    int error = errno;
    release_memory();
    atomic_store(&g_owned, 0);
    set_message(message, message_len, "cannot open /proc/self/task", error);
    return -error;
  }
  refresh_ranges(s);

  int installed = cap_signal_install(s->signal_number);
  if (installed != 0) {
    close(g_task_dir_fd);
    g_task_dir_fd = -1;
    release_memory();
    atomic_store(&g_owned, 0);
    set_message(message, message_len, "sigaction failed", -installed);
    return installed;
  }
  atomic_store(&s->active, 1);
  g_started = 1;
  scan_threads(s);  // arm every current thread; the ticker keeps the set current

  // The ticker starts with every signal blocked, so no sample lands on it.
  sigset_t all, previous;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &previous);
  int created = pthread_create(&g_ticker, 0, ticker_main, s);
  pthread_sigmask(SIG_SETMASK, &previous, 0);
  if (created != 0) {
    cap_session_stop();
    cap_session_release();
    set_message(message, message_len, "cannot start the sampler thread", created);
    return -created;
  }
  g_ticker_running = 1;
  return 0;
}

// MARK: - Stop and release

void cap_session_stop(void) {
  cap_session *s = &cap_global_session;
  if (!g_started) return;
  if (g_ticker_running) {
    atomic_store(&g_ticker_stop, 1);
    pthread_join(g_ticker, 0);
    g_ticker_running = 0;
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
  if (s->engine == CAP_ENGINE_WALL_TICKER) account_undelivered(s);
  if (g_task_dir_fd >= 0) {
    close(g_task_dir_fd);
    g_task_dir_fd = -1;
  }
  g_started = 0;
}

void cap_session_release(void) {
  if (!atomic_load(&g_owned)) return;
  cap_session_stop();
  release_memory();
  atomic_store(&g_owned, 0);
}

// MARK: - Drain

static size_t copy_slot(cap_slot *slot, char *out, size_t capacity, size_t used, int *full) {
  uint32_t depth = slot->header.depth;
  if (depth > CAP_MAX_DEPTH) depth = CAP_MAX_DEPTH;
  size_t bytes = sizeof(cap_sample_header) + (size_t)depth * sizeof(uint64_t);
  if (used + bytes > capacity) {
    *full = 1;
    return 0;
  }
  memcpy(out + used, &slot->header, sizeof(cap_sample_header));
  memcpy(out + used + sizeof(cap_sample_header), slot->frames, (size_t)depth * sizeof(uint64_t));
  atomic_store_explicit(&slot->state, CAP_SLOT_EMPTY, memory_order_release);
  return bytes;
}

size_t cap_session_drain(void *out_pointer, size_t capacity, int full_scan) {
  cap_session *s = &cap_global_session;
  if (!atomic_load(&g_owned) || s->slots == 0) return 0;
  return cap_slots_drain(s, out_pointer, capacity, full_scan);
}

size_t cap_slots_drain(cap_session *s, void *out_pointer, size_t capacity, int full_scan) {
  char *out = (char *)out_pointer;
  size_t used = 0;
  int full = 0;
  if (full_scan) {
    for (uint32_t i = 0; i < s->slot_count && !full; i++) {
      cap_slot *slot = &s->slots[i];
      if (atomic_load_explicit(&slot->state, memory_order_acquire) == CAP_SLOT_FULL) {
        used += copy_slot(slot, out, capacity, used, &full);
      }
    }
    return used;
  }
  // Positions are claimed in increasing order, so the finished samples are
  // (almost all) between the read and write cursors. A slot skipped here
  // because it was still being written is picked up by a later full scan.
  uint64_t end = atomic_load(&s->write_cursor);
  uint64_t position = s->read_cursor;
  if (end - position > s->slot_count) position = end - s->slot_count;
  for (; position < end; position++) {
    cap_slot *slot = &s->slots[position % s->slot_count];
    if (atomic_load_explicit(&slot->state, memory_order_acquire) == CAP_SLOT_FULL) {
      used += copy_slot(slot, out, capacity, used, &full);
      if (full) break;
    }
  }
  s->read_cursor = position;
  return used;
}

// MARK: - Introspection

void cap_session_stats(cap_stats *out) {
  cap_session *s = &cap_global_session;
  memset(out, 0, sizeof *out);
  out->samples_written = atomic_load(&s->samples_written);
  out->samples_dropped = atomic_load(&s->samples_dropped);
  out->complete_samples = atomic_load(&s->complete_samples);
  out->repeat_records = atomic_load(&g_repeat_records);
  out->ticks = atomic_load(&g_ticks);
  out->missed_ticks = atomic_load(&g_missed_ticks);
  out->signals_sent = atomic_load(&g_signals_sent);
  out->threads_seen = atomic_load(&g_threads_seen);
  out->threads_failed = atomic_load(&g_threads_failed);
  out->tick_ns_total = atomic_load(&g_tick_ns_total);
  out->maps_refreshes = atomic_load(&g_maps_refreshes);
  out->threads_signal_blocked = atomic_load(&g_threads_signal_blocked);
  out->undelivered_ticks = atomic_load(&g_undelivered_ticks);
  out->pending_skips = atomic_load(&g_pending_skips);
  out->engine = s->engine;
  out->exclude_kernel = g_exclude_kernel;
}

int cap_session_active(void) { return atomic_load(&g_owned); }

int cap_handler_installed(int signal_number) {
  struct sigaction current;
  if (sigaction(signal_number, 0, &current) != 0) return 0;
  return (current.sa_flags & SA_SIGINFO) != 0 &&
         current.sa_sigaction == (void (*)(int, siginfo_t *, void *))cap_signal_handler;
}

int32_t cap_gettid(void) { return (int32_t)syscall(SYS_gettid); }

// MARK: - Stack headroom (tests and docs)

uint64_t cap_measure_signal_stack(void) {
  cap_session *s = &cap_global_session;
  if (!atomic_load(&s->active)) return 0;
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
