// Engine: POSIX CPU timers. timer_create on each thread's CPU clock with
// SIGEV_THREAD_ID; the signal carries our cookie in sigev_value. One-shot
// and absolute (with a periodic backstop): the handler arms the next expiry
// at the previous target plus a randomized interval (cap_jitter.h), so the targets keep the mean
// rate exactly and fall at every phase of periodic work. They fire on
// scheduler ticks only (CONFIG_HZ), so a sample at an interval below the
// tick stands for every target it passed (the handler's weight), and work
// whose period divides the tick (4 ms at CONFIG_HZ=250) is still seen at
// one phase (perf events and the wall ticker have no tick; docs/sampling.md).
// No cost per context switch, which is why `auto` takes them at intervals of
// a tick or more.
#define _GNU_SOURCE
#include "cap_platform.h"
#if CAP_HAVE_SAMPLER
#include "cap_sampler.h"
#include "cap_jitter.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int timer_arm(cap_session *s, cap_sampler *sampler, cap_thread *t, int32_t tid) {
  (void)sampler;
  struct sigevent event;
  memset(&event, 0, sizeof event);
  event.sigev_notify = SIGEV_THREAD_ID;
  event.sigev_signo = s->signal_number;
  event.sigev_value.sival_ptr = (void *)(uintptr_t)CAP_COOKIE(atomic_load(&s->generation));
  event._sigev_un._tid = tid;
  clockid_t clock = cap_thread_cpu_clock(tid);
  struct timespec now;
  if (clock_gettime(clock, &now) != 0) return -errno;
  if (timer_create(clock, &event, &t->timer) != 0) return -errno;
  t->jitter_state = cap_jitter_seed((uint64_t)tid ^ cap_clock_ns(CLOCK_MONOTONIC));
  t->next_cpu_ns = (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec +
                   cap_jittered_interval(&t->jitter_state, s->interval_ns);
  // Published before the timer can fire: the handler re-arms only a timer
  // it sees here (deleted ones only after the thread ended or the session
  // stopped, and timer ids are not reused at once).
  __atomic_store_n(&t->has_timer, 1, __ATOMIC_RELEASE);
  // Periodic after its target: a backstop for an expiry whose signal was
  // lost (merged into a pending SIGPROF of another sender), so the thread
  // is sampled again and the handler's count of passed targets catches up.
  struct itimerspec spec;
  spec.it_interval.tv_sec = (time_t)(s->interval_ns / 1000000000ull);
  spec.it_interval.tv_nsec = (long)(s->interval_ns % 1000000000ull);
  spec.it_value.tv_sec = (time_t)(t->next_cpu_ns / 1000000000ull);
  spec.it_value.tv_nsec = (long)(t->next_cpu_ns % 1000000000ull);
  if (timer_settime(t->timer, TIMER_ABSTIME, &spec, 0) != 0) {
    int error = errno;
    __atomic_store_n(&t->has_timer, 0, __ATOMIC_RELEASE);
    timer_delete(t->timer);
    return -error;
  }
  return 0;
}

const cap_engine cap_engine_timer = {CAP_ENGINE_POSIX_TIMER, "posix_timer(thread-cpu-clock)", 0, timer_arm, 0, 0, 0};

#endif  // CAP_HAVE_SAMPLER
