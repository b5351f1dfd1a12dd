// Engine: the wall ticker. A thread wakes on absolute deadlines and
// signals every thread whose CPU clock moved since its last sample
// (rt_tgsigqueueinfo with our cookie, so the handler knows the signal is
// ours); the others get a run-length "repeat" record, so a blocked thread is
// interrupted at most once per stretch of blocking. A thread whose signal is
// still pending is not signalled again; if it blocks the signal, its ticks
// are charged to [signal blocked]. Runs on the ticker thread only.
#define _GNU_SOURCE
#include "cap_platform.h"
#if CAP_HAVE_SAMPLER
#include "cap_sampler.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int wall_arm(cap_session *s, cap_sampler *sampler, cap_thread *t, int32_t tid) {
  (void)s, (void)sampler;
  uint64_t cpu = 0;
  if (cap_read_thread_cpu(tid, &cpu) != 0) return -errno;
  t->last_cpu_ns = cpu;
  return 0;
}

static void write_record(cap_session *s, int32_t tid, uint64_t timestamp, uint64_t weight, uint16_t flags) {
  cap_slot *slot = cap_slot_acquire(s);
  if (slot == 0) return;
  slot->header.timestamp_ns = timestamp;
  slot->header.weight = weight;
  slot->header.tid = tid;
  slot->header.depth = 0;
  slot->header.flags = flags;
  slot->header.object_type = 0;
  slot->header.task = 0;
  slot->header.labels = 0;
  cap_slot_commit(slot);
  CAP_COUNT(s, repeat_records, 1);
}

static void wall_flush(cap_session *s, cap_sampler *sampler, cap_thread *t, int32_t tid) {
  (void)sampler;
  if (t->repeat_count == 0) return;
  write_record(s, tid, t->repeat_first_ns, t->repeat_count,
               (uint16_t)(CAP_SAMPLE_REPEAT | t->repeat_flags));
  t->repeat_count = 0;
}

/// Longest run of unchanged ticks kept in one record, so the timeline keeps
/// a resolution of at least 100 intervals.
#define CAP_MAX_RUN 100
/// A thread that blocks the signal is shown in the kernel state the drain
/// reads when its record arrives (SampleCollector): its runs end after
/// 100 ms, so that state is read about ten times a second, not once for a
/// whole profile.
#define CAP_SIGNAL_BLOCKED_RUN_NS 100000000ull

static void add_repeat(cap_session *s, cap_sampler *sampler, cap_thread *t, int32_t tid, uint64_t now,
                       uint32_t flags) {
  if (t->repeat_count > 0 &&
      (t->repeat_flags != flags || t->repeat_count >= CAP_MAX_RUN ||
       ((flags & CAP_SAMPLE_SIGNAL_BLOCKED) && now - t->repeat_first_ns >= CAP_SIGNAL_BLOCKED_RUN_NS))) {
    wall_flush(s, sampler, t, tid);
  }
  if (t->repeat_count == 0) {
    t->repeat_first_ns = now;
    t->repeat_flags = flags;
  }
  t->repeat_count++;
}

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
int cap_send_tick_signal(cap_session *s, cap_sampler *sampler, pid_t pid, int32_t tid) {
  siginfo_t info;
  memset(&info, 0, sizeof info);
  info.si_signo = s->signal_number;
  info.si_code = SI_QUEUE;
  info.si_pid = pid;
  info.si_uid = sampler->uid;
  info.si_value.sival_ptr = (void *)(uintptr_t)CAP_COOKIE(atomic_load(&s->generation));
  return (int)syscall(SYS_rt_tgsigqueueinfo, pid, tid, s->signal_number, &info);
}

static void wall_tick(cap_session *s, cap_sampler *sampler, uint64_t now) {
  pid_t pid = atomic_load_explicit(&s->pid, memory_order_relaxed);
  for (uint32_t n = 0; n < sampler->live_list_count; n++) {
    cap_thread *t = &s->threads[sampler->live_list[n]];
    int32_t tid = atomic_load_explicit(&t->tid, memory_order_relaxed);
    if (tid <= 0) continue;
    if (atomic_load_explicit(&t->pending, memory_order_acquire)) {
      // Signalled but its handler has not run yet: runnable and waiting for
      // a CPU (the previous stack stands), or blocking the signal (checked
      // once per stretch; charged to [signal blocked]). Never signalled again
      // while the signal is pending: a second one would merge into it anyway.
      CAP_COUNT(s, pending_skips, 1);
      if (t->pending_ticks++ == 0 && thread_blocks_signal(tid, s->signal_number)) {
        t->signal_blocked = 1;
        CAP_COUNT(s, threads_signal_blocked, 1);
      }
      if (t->signal_blocked) {
        CAP_COUNT(s, undelivered_ticks, 1);
        add_repeat(s, sampler, t, tid, now, CAP_SAMPLE_UNDELIVERED | CAP_SAMPLE_SIGNAL_BLOCKED);
      } else {
        add_repeat(s, sampler, t, tid, now, 0);
      }
      continue;
    }
    uint64_t cpu = 0;
    if (cap_read_thread_cpu(tid, &cpu) != 0) continue;  // gone; the next scan removes it
    uint64_t baseline = t->last_cpu_ns;
    uint64_t after_handler = atomic_load_explicit(&t->handler_cpu_ns, memory_order_relaxed);
    if (after_handler > baseline) baseline = after_handler;
    int ran = cpu > baseline + s->idle_threshold_ns;
    t->last_cpu_ns = cpu;
    if (t->has_sample && !ran) {
      add_repeat(s, sampler, t, tid, now, CAP_SAMPLE_IDLE);
      continue;
    }
    wall_flush(s, sampler, t, tid);
    atomic_store_explicit(&t->pending_flags, ran ? 0u : (uint32_t)CAP_SAMPLE_IDLE,
                          memory_order_relaxed);
    t->pending_ticks = 0;
    t->signal_blocked = 0;
    t->pending_since_ns = now;
    atomic_store_explicit(&t->pending, 1, memory_order_release);
    if (cap_send_tick_signal(s, sampler, pid, tid) == 0) {
      t->has_sample = 1;
      CAP_COUNT(s, signals_sent, 1);
    } else {
      atomic_store(&t->pending, 0);
    }
  }
}

/// After the last tick: a thread whose last signal was never handled gets a
/// record for that tick, so it is listed (never silently dropped) — as
/// [signal blocked] when it blocks the signal, else as its previous stack.
static void wall_finish(cap_session *s, cap_sampler *sampler) {
  for (uint32_t i = 0; i < s->thread_capacity; i++) {
    cap_thread *t = &s->threads[i];
    int32_t tid = atomic_load(&t->tid);
    if (tid <= 0 || !atomic_load(&t->pending)) continue;
    wall_flush(s, sampler, t, tid);
    uint16_t flags = 0;
    if (t->signal_blocked || thread_blocks_signal(tid, s->signal_number)) {
      if (!t->signal_blocked) CAP_COUNT(s, threads_signal_blocked, 1);
      flags = CAP_SAMPLE_UNDELIVERED | CAP_SAMPLE_SIGNAL_BLOCKED;
      CAP_COUNT(s, undelivered_ticks, 1);
    }
    write_record(s, tid, t->pending_since_ns, 1, (uint16_t)(CAP_SAMPLE_REPEAT | flags));
    atomic_store(&t->pending, 0);
  }
}

const cap_engine cap_engine_wall = {CAP_ENGINE_WALL_TICKER, "wall_ticker(tgkill)", 0, wall_arm, wall_flush, wall_tick, wall_finish};

#endif  // CAP_HAVE_SAMPLER
