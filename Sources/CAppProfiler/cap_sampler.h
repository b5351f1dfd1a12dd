// The sampler's side of a session (the ticker thread and the code that arms
// threads), shared by session_linux.c and the engines. Nothing here runs in
// the signal handler; the handler's state is cap_session (cap_session.h).
//
// Engines, one file each, behind one small table of operations
// (cap_engine, as async-profiler's Engine):
//   engine_perf_linux.c     perf events (task clock per thread)
//   engine_timer_linux.c    POSIX CPU timers
//   engine_wall_linux.c     the wall ticker
//   engine_cputick_linux.c  the CPU ticker
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
} cap_sampler;

/// One way of sampling: what session_linux.c calls, for every engine alike.
typedef struct cap_engine {
  int32_t id;        // CAP_ENGINE_*
  const char *name;  // as profiles name it
  /// 0 when the engine can run here, else -errno (NULL: always can).
  int (*probe)(cap_session *session, cap_sampler *sampler);
  /// Starts sampling one thread; 0 or -errno.
  int (*arm)(cap_session *session, cap_sampler *sampler, cap_thread *thread, int32_t tid);
  /// Stops sampling one thread (its perf event or timer is released by the
  /// caller, for every engine); NULL: nothing more to do.
  void (*disarm)(cap_session *session, cap_sampler *sampler, cap_thread *thread, int32_t tid);
  /// One tick of the ticker thread, at randomized intervals of the
  /// session's mean; NULL: the engine has no ticks (the ticker only looks
  /// for new threads).
  void (*tick)(cap_session *session, cap_sampler *sampler, uint64_t now);
  /// After the last tick, once no handler runs; NULL: nothing.
  void (*finish)(cap_session *session, cap_sampler *sampler);
} cap_engine;

extern const cap_engine cap_engine_perf, cap_engine_timer, cap_engine_wall, cap_engine_cputick;
/// The engine of `id` (CAP_ENGINE_*, not AUTO), or NULL.
const cap_engine *cap_engine_of(int32_t id);

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

// engine_wall_linux.c
/// The tickers' signal to one thread (SI_QUEUE with the session's cookie).
int cap_send_tick_signal(cap_session *session, cap_sampler *sampler, pid_t pid, int32_t tid);

#endif
