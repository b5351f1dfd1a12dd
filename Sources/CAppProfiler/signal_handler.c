// The signal handler and everything it calls.
//
// Rules for this file (checked by SignalSafetyTests with `nm -u`): no malloc,
// no stdio, no locks, no Swift; only async-signal-safe libc calls
// (clock_gettime, syscall, ioctl, errno access). The handler never waits: a
// full buffer or an unknown stack is a counter or a flag.
//
// The handler stays installed after a session (signal_disposition.c says
// why). Each signal is classified first:
//   ours, a running session -> record a sample in that session (cpu or
//                              wall: the cookie's generation names it; perf
//                              event signals are the cpu session's);
//   ours, no session        -> a late one (pending on a thread that blocked
//                              the signal or had no CPU): counted, ignored;
//   not ours                -> the app's previous handler, or dropped
//                              (counted) where the app had SIG_DFL or SIG_IGN.
// With sessions of several kinds at once on one signal number, a signal of
// one can merge into a pending one of another (a standard signal is pending
// at most once per thread): each handler run also serves the other sessions
// — a wall tick waiting for this thread is recorded, a perf event that may
// have lost its overflow signal is re-armed.
#define _GNU_SOURCE
#include "cap_platform.h"
#if CAP_HAVE_SAMPLER
#include "cap_jitter.h"
#include "cap_session.h"
#include "cap_stack.h"
#include "registers.h"
#include "unwind_cfi.h"
#include "unwind_fp.h"

#include <errno.h>
#include <linux/perf_event.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

cap_session cap_sessions[CAP_SESSION_COUNT];
_Atomic uint64_t cap_stale_signals;
// The handler's view of the disposition (written by signal_disposition.c);
// defined here so this object references no data outside itself.
cap_disposition cap_dispositions[NSIG];
_Atomic uint64_t cap_foreign_signals_chained;
_Atomic uint64_t cap_foreign_signals_ignored;
_Atomic int32_t cap_perf_events_used;
// Labels (cap_labels_configure): the TaskLocal key and the task's chain
// head offset, set once; the thread's own label set (setThreadLabels).
_Atomic uint64_t cap_labels_key;
_Atomic uint32_t cap_labels_head_offset;
__thread uint64_t cap_thread_labels __attribute__((tls_model("initial-exec")));

#if defined(__x86_64__)
/// The interrupted r14 (x86_64: the Swift async context register; only the
/// x86_64 CFI walk reads it).
static inline uint64_t cap_context_r14(const ucontext_t *uc) {
  return (uint64_t)uc->uc_mcontext.gregs[REG_R14];
}
#endif

static void cap_record(cap_session *s, const ucontext_t *uc, int32_t tid, uint64_t weight,
                       uint16_t flags) {
  cap_slot *slot = cap_slot_acquire(s);
  if (slot == 0) return;
  uint64_t pc = cap_context_pc(uc);
  uint64_t sp = cap_context_sp(uc);
  uint64_t low = 0, high = 0;
  uint32_t depth;
  uint64_t task = 0, labels = 0;
  // One hold on the memory snapshot for the whole walk: stack bounds, and
  // the heap where async contexts and the task's TLS slot live.
  cap_range_set *set = cap_ranges_hold(s);
  cap_async_walk walk = {0};
  cap_sample_context(s, set, &walk, &task, &labels);
  if (set != 0 && cap_ranges_find_stack(s, set, sp, &low, &high)) {
#if defined(__x86_64__)
    uint64_t r14 = cap_context_r14(uc);
#else
    uint64_t r14 = 0;
#endif
    depth = cap_walk_stack(s, pc, sp, cap_context_fp(uc), r14, &walk, low, high, slot->frames, &flags);
  } else {
    depth = cap_walk_leaf_only(pc, slot->frames, &flags);
  }
  cap_ranges_release(set);
  cap_sample_context_end(s, &walk);
  cap_sample_finish(s, slot, tid, depth, flags, task, labels);
  slot->header.weight = weight;
  cap_slot_commit(slot);
  CAP_COUNT(s, samples_written, 1);
}

enum { CAP_ORIGIN_FOREIGN = 0, CAP_ORIGIN_OURS = 1 };

/// Ours: a POSIX timer or ticker signal carrying our cookie, or a perf event
/// signal (F_SETSIG: a SIGPOLL code with si_fd) once perf events were used.
static int cap_signal_origin(const siginfo_t *info) {
  uint64_t cookie = (uint64_t)(uintptr_t)info->si_value.sival_ptr;
  switch (info->si_code) {
  case SI_TIMER:
    return (cookie >> 32) == CAP_COOKIE_MAGIC ? CAP_ORIGIN_OURS : CAP_ORIGIN_FOREIGN;
  case SI_QUEUE: {
    if ((cookie >> 32) != CAP_COOKIE_MAGIC) return CAP_ORIGIN_FOREIGN;
    for (int k = 0; k < CAP_SESSION_COUNT; k++) {
      if (info->si_pid == atomic_load_explicit(&cap_sessions[k].pid, memory_order_relaxed)) return CAP_ORIGIN_OURS;
    }
    return CAP_ORIGIN_FOREIGN;
  }
  case POLL_IN: case POLL_OUT: case POLL_MSG: case POLL_ERR: case POLL_PRI: case POLL_HUP:
    return atomic_load_explicit(&cap_perf_events_used, memory_order_relaxed) && info->si_fd >= 0
               ? CAP_ORIGIN_OURS
               : CAP_ORIGIN_FOREIGN;
  default:
    return CAP_ORIGIN_FOREIGN;
  }
}

static int cap_has_cookie(const siginfo_t *info) {
  return info->si_code == SI_TIMER || info->si_code == SI_QUEUE;
}

/// The session a signal of ours is for: the one whose generation the cookie
/// carries (timers, tickers), the cpu session for perf events; NULL when no
/// session has that generation (a late signal).
static cap_session *cap_signal_session(const siginfo_t *info) {
  if (!cap_has_cookie(info)) return &cap_sessions[CAP_SESSION_CPU];
  uint32_t generation = (uint32_t)(uint64_t)(uintptr_t)info->si_value.sival_ptr;
  for (int k = 0; k < CAP_SESSION_COUNT; k++) {
    if (generation == atomic_load_explicit(&cap_sessions[k].generation, memory_order_relaxed)) return &cap_sessions[k];
  }
  return 0;
}

/// Entry check (Dekker-style with cap_session_stop: count first, then read
/// `active`; stop clears `active`, then waits for the count to reach zero).
/// `info` NULL: entered to serve a merged signal of the other kind (no cookie
/// to check). 0: not entered (not running, another signal number, or a late
/// signal of an earlier session).
static int cap_enter(cap_session *s, int signal_number, const siginfo_t *info) {
  atomic_fetch_add(&s->handlers_running, 1);
  int ok = atomic_load(&s->active) && signal_number == s->signal_number;
  if (ok && info != 0 && cap_has_cookie(info)) {
    uint64_t cookie = (uint64_t)(uintptr_t)info->si_value.sival_ptr;
    ok = (uint32_t)cookie == atomic_load_explicit(&s->generation, memory_order_relaxed);
  }
  if (!ok) atomic_fetch_sub(&s->handlers_running, 1);
  return ok;
}

static void cap_leave(cap_session *s) { atomic_fetch_sub(&s->handlers_running, 1); }

/// Passes a signal that is not ours to the handler the app had before ours.
/// SIG_DFL is not emulated: for SIGPROF it would end the process.
static void cap_signal_chain(int signal_number, siginfo_t *info, void *ucontext) {
  if (signal_number <= 0 || signal_number >= NSIG) return;
  uint32_t installed = atomic_load_explicit(&cap_dispositions[signal_number].installed, memory_order_acquire);
  if (installed == 0 || installed > 2) {
    atomic_fetch_add_explicit(&cap_foreign_signals_ignored, 1, memory_order_relaxed);
    return;
  }
  const struct sigaction *previous = &cap_dispositions[signal_number].previous[installed - 1];
  // sa_handler and sa_sigaction share storage: SIG_DFL and SIG_IGN are
  // values of it whatever sa_flags says (SIG_IGN with SA_SIGINFO set would
  // otherwise be called as a function at address 1).
  if (previous->sa_handler == SIG_DFL || previous->sa_handler == SIG_IGN) {
    atomic_fetch_add_explicit(&cap_foreign_signals_ignored, 1, memory_order_relaxed);
    return;
  }
  atomic_fetch_add_explicit(&cap_foreign_signals_chained, 1, memory_order_relaxed);
  if (previous->sa_flags & SA_SIGINFO) {
    previous->sa_sigaction(signal_number, info, ucontext);
  } else {
    previous->sa_handler(signal_number);
  }
}

/// Most targets one POSIX timer expiry may stand for (a thread stopped for
/// long, or a very short interval): past it the schedule restarts from now.
#define CAP_MAX_TARGETS_PER_EXPIRY 4096

/// A cpu sample (perf event or POSIX timer). Each engine then arms the next
/// one a randomized interval later (cap_jitter.h).
static void cap_sample_cpu(cap_session *s, const siginfo_t *info, const ucontext_t *uc, int32_t tid) {
  cap_thread *thread = cap_thread_find(s, tid);
  if (s->engine == CAP_ENGINE_PERF_EVENT) {
    cap_record(s, uc, tid, 1, 0);
    // Re-arm for one more overflow, but only an fd this session owns for this
    // thread (the ticker sets perf_fd to -1 before it closes the fd).
    if (thread != 0 && info->si_fd >= 0 &&
        atomic_load_explicit(&thread->perf_fd, memory_order_acquire) == info->si_fd) {
      uint64_t period = cap_jittered_interval(&thread->jitter_state, s->interval_ns);
      ioctl(info->si_fd, PERF_EVENT_IOC_PERIOD, &period);
      ioctl(info->si_fd, PERF_EVENT_IOC_REFRESH, 1);
    }
    return;
  }
  if (thread == 0 || !__atomic_load_n(&thread->has_timer, __ATOMIC_ACQUIRE) || info->si_code != SI_TIMER) {
    cap_record(s, uc, tid, 1, 0);
    return;
  }
  // Every target this expiry passed is one sample's worth of CPU time (the
  // timer fires on the first scheduler tick after its target).
  uint64_t now = cap_now_ns(CLOCK_THREAD_CPUTIME_ID);
  uint64_t target = thread->next_cpu_ns;
  uint64_t weight = 0;
  while (target <= now && weight < CAP_MAX_TARGETS_PER_EXPIRY) {
    weight++;
    target += cap_jittered_interval(&thread->jitter_state, s->interval_ns);
  }
  if (weight == 0) weight = 1;  // fired early (a clock step): still one sample
  if (target <= now) target = now + cap_jittered_interval(&thread->jitter_state, s->interval_ns);
  thread->next_cpu_ns = target;
  cap_record(s, uc, tid, weight, 0);
  struct itimerspec next;  // the same periodic backstop as at arming
  next.it_interval.tv_sec = (time_t)(s->interval_ns / 1000000000ull);
  next.it_interval.tv_nsec = (long)(s->interval_ns % 1000000000ull);
  next.it_value.tv_sec = (time_t)(target / 1000000000ull);
  next.it_value.tv_nsec = (long)(target % 1000000000ull);
  timer_settime(thread->timer, TIMER_ABSTIME, &next, 0);
}

/// A wall sample for the tick this thread was signalled for. `merged`: this
/// run is for another session's signal, and records only a tick that is
/// waiting (its own signal merged into that one). Returns 0 when there was
/// no tick to record (already recorded through a merged signal).
static int cap_sample_wall(cap_session *s, const ucontext_t *uc, int32_t tid, int merged) {
  cap_thread *thread = cap_thread_find(s, tid);
  if (thread != 0 && !atomic_load_explicit(&thread->pending, memory_order_acquire)) return 0;
  if (thread == 0 && merged) return 0;
  uint16_t flags = 0;
  if (thread != 0) flags = (uint16_t)atomic_load_explicit(&thread->pending_flags, memory_order_relaxed);
  cap_record(s, uc, tid, 1, flags);
  if (thread != 0) {
    // Last: the ticker compares later CPU time against this value, so the
    // handler's own run time does not count as the thread having run.
    atomic_store_explicit(&thread->handler_cpu_ns, cap_now_ns(CLOCK_THREAD_CPUTIME_ID),
                          memory_order_relaxed);
    atomic_store_explicit(&thread->pending, 0, memory_order_release);
  }
  return 1;
}

/// A cpu-ticker sample: the weight is the CPU intervals the ticker counted
/// for this thread. `merged`: run for another session's signal, records only
/// when this session's signal is pending (it merged into that one).
static int cap_sample_cputick(cap_session *s, const ucontext_t *uc, int32_t tid, int merged) {
  cap_thread *thread = cap_thread_find(s, tid);
  if (thread == 0) {
    if (merged) return 0;
    cap_record(s, uc, tid, 1, 0);
    return 1;
  }
  if (!atomic_load_explicit(&thread->pending, memory_order_acquire)) return 0;
  uint64_t weight = atomic_exchange_explicit(&thread->pending_weight, 0, memory_order_relaxed);
  if (weight != 0) cap_record(s, uc, tid, weight, 0);
  atomic_store_explicit(&thread->pending, 0, memory_order_release);
  return 1;
}

void cap_signal_handler(int signal_number, void *info_pointer, void *ucontext_pointer) {
  int saved_errno = errno;
  siginfo_t *info = (siginfo_t *)info_pointer;
  const ucontext_t *uc = (const ucontext_t *)ucontext_pointer;

  if (cap_signal_origin(info) == CAP_ORIGIN_FOREIGN) {
    errno = saved_errno;
    cap_signal_chain(signal_number, info, ucontext_pointer);
    errno = saved_errno;
    return;
  }

  cap_session *s = cap_signal_session(info);
  if (s == 0 || !cap_enter(s, signal_number, info)) {
    atomic_fetch_add_explicit(&cap_stale_signals, 1, memory_order_relaxed);
    errno = saved_errno;
    return;
  }
  int32_t tid = (int32_t)syscall(SYS_gettid);
  if (s->engine == CAP_ENGINE_WALL_TICKER) {
    if (!cap_sample_wall(s, uc, tid, 0)) atomic_fetch_add_explicit(&cap_stale_signals, 1, memory_order_relaxed);
  } else if (s->engine == CAP_ENGINE_CPU_TICKER) {
    if (!cap_sample_cputick(s, uc, tid, 0)) atomic_fetch_add_explicit(&cap_stale_signals, 1, memory_order_relaxed);
  } else {
    cap_sample_cpu(s, info, uc, tid);
  }
  cap_leave(s);

  // Another session's signal may have merged into this one.
  for (int k = 0; k < CAP_SESSION_COUNT; k++) {
    cap_session *other = &cap_sessions[k];
    if (other == s || !atomic_load_explicit(&other->active, memory_order_relaxed)) continue;
    if (!cap_enter(other, signal_number, 0)) continue;
    if (other->engine == CAP_ENGINE_WALL_TICKER) {
      cap_sample_wall(other, uc, tid, 1);
    } else if (other->engine == CAP_ENGINE_CPU_TICKER) {
      cap_sample_cputick(other, uc, tid, 1);
    } else if (other->engine == CAP_ENGINE_PERF_EVENT) {
      cap_thread *thread = cap_thread_find(other, tid);
      int fd = thread != 0 ? atomic_load_explicit(&thread->perf_fd, memory_order_acquire) : -1;
      if (fd >= 0) ioctl(fd, PERF_EVENT_IOC_REFRESH, 1);
    }
    cap_leave(other);
  }
  errno = saved_errno;
}

#endif  // CAP_HAVE_SAMPLER
