// Small helpers of the sampler's own threads (never the signal handler):
// clocks, thread CPU clocks, and the one error-message writer of the C side.
#define _GNU_SOURCE
#include "cap_platform.h"
#if CAP_HAVE_SAMPLER
#include "cap_sampler.h"

#include <errno.h>
#include <malloc.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

uint64_t cap_clock_ns(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void cap_set_message(char *message, size_t len, const char *text, int error) {
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
clockid_t cap_thread_cpu_clock(int32_t tid) {
  return (clockid_t)((~(uint32_t)tid) << 3) | 6;
}

int cap_read_thread_cpu(int32_t tid, uint64_t *out) {
  struct timespec ts;
  if (clock_gettime(cap_thread_cpu_clock(tid), &ts) != 0) return -1;
  *out = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
  return 0;
}

void cap_release_free_heap(void) {
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}

#endif  // CAP_HAVE_SAMPLER
