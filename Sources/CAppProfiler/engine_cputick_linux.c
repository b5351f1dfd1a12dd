// Engine: the CPU ticker. A cpu profile without the scheduler tick: the
// ticker thread wakes at randomized deadlines (hrtimers, cap_jitter.h) of
// the interval's mean, reads each thread's CPU clock, and signals a thread
// once its CPU time passed its next randomized target, with the number of
// targets passed as the sample's weight. POSIX CPU timers fire only on
// scheduler ticks (4 ms at CONFIG_HZ=250), so work whose period divides the
// tick is seen at one phase whatever their targets; perf events have no
// tick but cost at every context switch. Here a sample lands at a random
// moment of the thread's running time, and nothing is paid per context
// switch — only a clock read per thread per tick. Opt-in (engine=ticker):
// a thread put off its core reads as not running (docs/sampling.md).
//
// A thread that used CPU may be asleep at the tick: signalling it then
// would record where it sleeps (epoll_wait) for time it spent elsewhere.
// Its weight is kept and it is signalled at a later tick that finds it
// running (its CPU clock, read twice, moves); the ticks are random, so
// those moments are random moments of its running time. A thread never
// found running within CAP_CPUTICK_MAX_WAIT_NS is signalled anyway (its
// time is counted; the stack may be its wait). Runs on the ticker thread.
#define _GNU_SOURCE
#include "cap_platform.h"
#if CAP_HAVE_SAMPLER
#include "cap_sampler.h"
#include "cap_jitter.h"

#include <errno.h>

/// Longest a thread's counted CPU time waits for a tick that finds it
/// running: long enough for a thread that runs a small share of the time to
/// be found at one of many ticks, short enough that little time is left
/// unrecorded when a profile ends.
#define CAP_CPUTICK_MAX_WAIT_NS 1000000000ull
/// Most intervals one sample may stand for (a thread that ran long between
/// two ticks, or a very short interval); past it the targets restart from now.
#define CAP_CPUTICK_MAX_TARGETS 4096u

static int cputick_arm(cap_session *s, cap_sampler *sampler, cap_thread *t, int32_t tid) {
  (void)sampler;
  uint64_t cpu = 0;
  if (cap_read_thread_cpu(tid, &cpu) != 0) return -errno;
  t->jitter_state = cap_jitter_seed((uint64_t)tid ^ cap_clock_ns(CLOCK_MONOTONIC));
  t->next_cpu_ns = cpu + cap_jittered_interval(&t->jitter_state, s->interval_ns);
  t->pending_since_ns = 0;
  atomic_store(&t->pending_weight, 0);
  atomic_store(&t->pending, 0);
  return 0;
}

/// 1 when the thread is on a CPU now: its CPU clock, read again, moved past
/// `before` (the clock of another thread includes the slice it is running
/// right now). One clock read; a runnable thread waiting for a CPU reads as
/// not running, and is found at a later tick.
static int thread_is_running(int32_t tid, uint64_t before) {
  uint64_t again = 0;
  return cap_read_thread_cpu(tid, &again) == 0 && again > before;
}

static void cputick_tick(cap_session *s, cap_sampler *sampler, uint64_t now) {
  pid_t pid = atomic_load_explicit(&s->pid, memory_order_relaxed);
  for (uint32_t n = 0; n < sampler->live_list_count; n++) {
    cap_thread *t = &s->threads[sampler->live_list[n]];
    int32_t tid = atomic_load_explicit(&t->tid, memory_order_relaxed);
    if (tid <= 0) continue;
    uint64_t cpu = 0;
    if (cap_read_thread_cpu(tid, &cpu) != 0) continue;  // gone; the next scan removes it
    if (cpu >= t->next_cpu_ns) {
      uint64_t passed = 0;
      uint64_t target = t->next_cpu_ns;
      while (target <= cpu && passed < CAP_CPUTICK_MAX_TARGETS) {
        passed++;
        target += cap_jittered_interval(&t->jitter_state, s->interval_ns);
      }
      if (target <= cpu) target = cpu + cap_jittered_interval(&t->jitter_state, s->interval_ns);
      t->next_cpu_ns = target;
      // Added to what a pending signal will take (the handler exchanges it).
      if (atomic_fetch_add_explicit(&t->pending_weight, passed, memory_order_relaxed) == 0) t->pending_since_ns = now;
    }
    // Counted time waits for its sample: looked at every tick until a tick
    // finds the thread running (or it waited too long).
    if (atomic_load_explicit(&t->pending_weight, memory_order_relaxed) == 0) continue;
    if (atomic_load_explicit(&t->pending, memory_order_acquire)) {
      CAP_COUNT(s, pending_skips, 1);
      continue;
    }
    int running = thread_is_running(tid, cpu);
    if (now - t->pending_since_ns < CAP_CPUTICK_MAX_WAIT_NS && !running) continue;
    atomic_store_explicit(&t->pending, 1, memory_order_release);
    if (cap_send_tick_signal(s, sampler, pid, tid) == 0) {
      CAP_COUNT(s, signals_sent, 1);
    } else {
      atomic_store(&t->pending, 0);
    }
  }
}

const cap_engine cap_engine_cputick = {
    CAP_ENGINE_CPU_TICKER, "cpu_ticker(thread-cpu-clock, tgkill)", 0, cputick_arm, 0, cputick_tick, 0};

#endif  // CAP_HAVE_SAMPLER
