// The process-wide disposition of the sampling signal. Not on the signal path.
//
// Why the handler is never uninstalled: a signal of ours can stay pending
// long after a session ends — on a thread that blocks SIGPROF (librdkafka's
// threads do), or one starved of CPU (SCHED_FIFO spinners) — and a pending
// SIGPROF delivered under SIG_DFL terminates the process ("Profiling timer
// expired"). So the first session installs cap_signal_handler and it stays:
// outside a session it returns at once for our own late signals, and passes
// every signal that is not ours to the handler the app had before (see
// cap_signal_chain in signal_handler.c). A handler the app installs later
// replaces ours in the kernel; the next session installs ours again on top
// of it and chains to it.
#define _GNU_SOURCE
#include "cap_platform.h"
#if CAP_HAVE_SAMPLER
#include "cap_session.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>

static pthread_mutex_t g_install_lock = PTHREAD_MUTEX_INITIALIZER;

static int is_ours(const struct sigaction *action) {
  return (action->sa_flags & SA_SIGINFO) != 0 &&
         action->sa_sigaction == (void (*)(int, siginfo_t *, void *))cap_signal_handler;
}

int cap_signal_install(int signal_number) {
  if (signal_number <= 0 || signal_number >= NSIG) return -EINVAL;
  pthread_mutex_lock(&g_install_lock);
  cap_disposition *d = &cap_dispositions[signal_number];
  struct sigaction current;
  int result = 0;
  if (sigaction(signal_number, 0, &current) != 0) {
    result = -errno;
  } else if (!is_ours(&current)) {
    // Save the app's action in the slot handlers are not reading, publish
    // it, then install ours: a handler running now reads the other slot.
    uint32_t in_use = atomic_load(&d->installed);
    uint32_t slot = in_use == 1 ? 1 : 0;
    d->previous[slot] = current;
    atomic_store(&d->installed, slot + 1);
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = (void (*)(int, siginfo_t *, void *))cap_signal_handler;
    action.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&action.sa_mask);
    if (sigaction(signal_number, &action, 0) != 0) result = -errno;
  }
  pthread_mutex_unlock(&g_install_lock);
  return result;
}

void cap_signal_counters(uint64_t *chained, uint64_t *ignored, uint64_t *stale) {
  *chained = atomic_load(&cap_foreign_signals_chained);
  *ignored = atomic_load(&cap_foreign_signals_ignored);
  *stale = atomic_load(&cap_stale_signals);
}

#endif  // CAP_HAVE_SAMPLER
