// Engine: perf events. perf_event_open(PERF_COUNT_SW_TASK_CLOCK, pid = tid)
// per thread, O_ASYNC + F_SETSIG + F_SETOWN_EX(F_OWNER_TID): the kernel
// signals the thread itself when its CPU time crosses the period, and the
// handler sets a randomized next period (PERF_EVENT_IOC_PERIOD, cap_jitter.h:
// the same mean, every phase of periodic work) and re-arms with
// PERF_EVENT_IOC_REFRESH(1). ~98 % of the expected
// samples at 1 kHz here. Kernel time is included where allowed
// (perf_event_paranoid < 2), else excluded (said in the profile).
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
#include <linux/perf_event.h>
#include <sys/ioctl.h>

/// The one attribute set of probe and arm: task clock, one period.
static struct perf_event_attr cap_perf_attr(uint64_t interval_ns, int exclude_kernel) {
  struct perf_event_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.type = PERF_TYPE_SOFTWARE;
  attr.size = sizeof attr;
  attr.config = PERF_COUNT_SW_TASK_CLOCK;
  attr.sample_period = interval_ns;
  attr.disabled = 1;
  attr.exclude_hv = 1;
  attr.exclude_kernel = exclude_kernel ? 1 : 0;
  return attr;
}

/// Opens the event for `tid` (0: the caller), dropping kernel time when
/// the kernel refuses it (perf_event_paranoid 2). -errno on failure.
static int cap_perf_open(cap_sampler *sampler, uint64_t interval_ns, int32_t tid) {
  struct perf_event_attr attr = cap_perf_attr(interval_ns, sampler->exclude_kernel);
  int fd = (int)syscall(SYS_perf_event_open, &attr, tid, -1, -1, PERF_FLAG_FD_CLOEXEC);
  if (fd < 0 && !sampler->exclude_kernel && (errno == EACCES || errno == EPERM)) {
    sampler->exclude_kernel = 1;
    attr = cap_perf_attr(interval_ns, 1);
    fd = (int)syscall(SYS_perf_event_open, &attr, tid, -1, -1, PERF_FLAG_FD_CLOEXEC);
  }
  return fd < 0 ? -errno : fd;
}

static int perf_probe(cap_session *s, cap_sampler *sampler) {
  int fd = cap_perf_open(sampler, s->interval_ns, 0);
  if (fd < 0) return fd;
  close(fd);
  return 0;
}

static int perf_arm(cap_session *s, cap_sampler *sampler, cap_thread *t, int32_t tid) {
  t->jitter_state = cap_jitter_seed((uint64_t)tid ^ cap_clock_ns(CLOCK_MONOTONIC));
  int fd = cap_perf_open(sampler, cap_jittered_interval(&t->jitter_state, s->interval_ns), tid);
  if (fd < 0) return fd;
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

/// The fd is closed by the caller (every engine's per-thread resources
/// are released in one place, session_linux.c).
const cap_engine cap_engine_perf = {CAP_ENGINE_PERF_EVENT, "perf_event(task-clock)", perf_probe, perf_arm, 0, 0, 0};

#endif  // CAP_HAVE_SAMPLER
