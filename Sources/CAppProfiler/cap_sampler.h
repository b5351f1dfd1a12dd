// The sampler's side of a session (the ticker thread and the code that arms
// threads), shared by session_linux.c and the engines. Nothing here runs in
// the signal handler; the handler's state is cap_session (cap_session.h).
//
// Engines, one file each, get the session and this state passed in:
//   engine_perf_linux.c   perf events (task clock per thread)
//   engine_timer_linux.c  POSIX CPU timers
//   engine_wall_linux.c   the wall ticker
#ifndef CAP_SAMPLER_H
#define CAP_SAMPLER_H

#include "cap_session.h"
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/// Ticker-side state of the running session.
typedef struct cap_sampler {
  int exclude_kernel;           // perf engine: 1 when kernel time is excluded
  uint32_t uid;                 // getuid(), for the ticker's siginfo
  /// Dense list of table indices of live threads, rebuilt by each scan, so a
  /// wall tick touches only the entries of threads that exist.
  uint32_t *live_list;
  uint32_t live_list_count;
  // Counters, published through cap_session_stats.
  _Atomic uint64_t repeat_records;
  _Atomic uint64_t signals_sent;
  _Atomic uint64_t threads_signal_blocked;
  _Atomic uint64_t undelivered_ticks;
  _Atomic uint64_t pending_skips;
} cap_sampler;

// cap_support_linux.c
uint64_t cap_clock_ns(clockid_t clock);
/// The CPU clock of another thread of this process (Linux encoding of
/// MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED)). Unlike schedstat, reading it
/// includes the current slice of a thread that is running right now.
clockid_t cap_thread_cpu_clock(int32_t tid);
int cap_read_thread_cpu(int32_t tid, uint64_t *out);
/// Writes "text" or "text: strerror(error)" into `message` (the C side's
/// one error-message writer; alloc_linux.c uses it too).
void cap_set_message(char *message, size_t len, const char *text, int error);

// thread_table.c
/// Ticker side: claims an empty or tombstoned entry for `tid`, or NULL.
cap_thread *cap_thread_insert(cap_session *session, int32_t tid);

// engine_perf_linux.c
/// 0 when perf events can be opened here (kernel time dropped if refused).
int cap_perf_probe(cap_sampler *sampler, uint64_t interval_ns);
int cap_perf_arm(cap_session *session, cap_sampler *sampler, cap_thread *thread, int32_t tid);

// engine_timer_linux.c
int cap_timer_arm(cap_session *session, cap_thread *thread, int32_t tid);

// engine_wall_linux.c
int cap_wall_arm(cap_session *session, cap_thread *thread, int32_t tid);
/// One tick: signal the threads that ran, extend the runs of the others.
void cap_wall_tick(cap_session *session, cap_sampler *sampler, uint64_t now);
/// Writes the open run of unchanged ticks of `thread`, if any.
void cap_wall_flush(cap_session *session, cap_sampler *sampler, cap_thread *thread, int32_t tid);
/// After the last tick: a record for each thread whose signal was never handled.
void cap_wall_account_undelivered(cap_session *session, cap_sampler *sampler);
/// The tickers' signal to one thread (SI_QUEUE with the session's cookie).
int cap_send_tick_signal(cap_session *session, cap_sampler *sampler, pid_t pid, int32_t tid);

// engine_cputick_linux.c
int cap_cputick_arm(cap_session *session, cap_thread *thread, int32_t tid);
/// One tick: signal the threads whose CPU time passed their next target.
void cap_cputick_tick(cap_session *session, cap_sampler *sampler, uint64_t now);

#endif
