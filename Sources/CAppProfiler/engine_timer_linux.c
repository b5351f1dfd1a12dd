// Engine: POSIX CPU timers. timer_create on each thread's CPU clock with
// SIGEV_THREAD_ID; the signal carries our cookie in sigev_value. They fire
// on scheduler ticks only (CONFIG_HZ), so a sample at an interval below the
// tick stands for several intervals (weight 1 + si_overrun); at intervals of
// a tick or more they are exact and cost nothing per context switch.
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

int cap_timer_arm(cap_session *s, cap_thread *t, int32_t tid) {
  struct sigevent event;
  memset(&event, 0, sizeof event);
  event.sigev_notify = SIGEV_THREAD_ID;
  event.sigev_signo = s->signal_number;
  event.sigev_value.sival_ptr = (void *)(uintptr_t)CAP_COOKIE(atomic_load(&s->generation));
  event._sigev_un._tid = tid;
  if (timer_create(cap_thread_cpu_clock(tid), &event, &t->timer) != 0) return -errno;
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

#endif  // CAP_HAVE_SAMPLER
