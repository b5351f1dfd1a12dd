// Shared state of one sampling session: what the ticker/arming code
// (session_linux.c) writes and the signal handler (signal_handler.c) reads.
//
// Memory layout. All of it is mmap'd at session start and unmapped at release,
// so an idle process carries none of it:
//   threads:  `thread_capacity` cap_thread entries, an open-addressing table
//             keyed by tid (probe: (tid * 2654435761) & mask, then linear).
//   ranges:   two cap_range_set snapshots of /proc/self/maps (readable, writable
//             mappings only), double-buffered with a reader count each.
//   slots:    `slot_count` cap_slot, the lock-free sample buffer.
#ifndef CAP_SESSION_H
#define CAP_SESSION_H

#include "include/CAppProfiler.h"
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#define CAP_TID_EMPTY 0
#define CAP_TID_TOMBSTONE (-1)
#define CAP_MAX_PROBES 128
#define CAP_MAX_RANGES 16384

/// Our signals carry a cookie in si_value (POSIX timers: sigev_value; wall
/// ticker: rt_tgsigqueueinfo with SI_QUEUE): the magic in the upper 32 bits,
/// the session generation in the lower 32. A SIGPROF without it (kill(),
/// setitimer, another profiler) is not ours and goes to the app's handler.
#define CAP_COOKIE_MAGIC 0x41505046ull  /* "APPF" */
#define CAP_COOKIE(generation) ((CAP_COOKIE_MAGIC << 32) | (uint64_t)(uint32_t)(generation))

enum { CAP_SLOT_EMPTY = 0, CAP_SLOT_WRITING = 1, CAP_SLOT_FULL = 2 };

/// One thread of the process. Fields marked (h) are read or written by the
/// handler; the others belong to the ticker thread alone.
typedef struct cap_thread {
  _Atomic int32_t tid;              // (h) CAP_TID_EMPTY, CAP_TID_TOMBSTONE or a tid
  _Atomic int32_t perf_fd;          // (h) perf event to re-arm, -1 when none
  _Atomic uint32_t pending;         // (h) wall: signalled, handler not yet run
  _Atomic uint32_t pending_flags;   // (h) wall: flags the handler copies into its sample
  _Atomic uint64_t handler_cpu_ns;  // (h) wall: thread CPU time when its handler ended
  uint64_t last_cpu_ns;             // wall: CPU time read at the previous tick
  uint64_t repeat_count;            // wall: ticks of the open run of unchanged stack
  uint64_t repeat_first_ns;         // wall: timestamp of that run's first tick
  uint32_t repeat_flags;
  uint32_t seen_generation;         // scan generation that last saw the thread
  uint32_t has_sample;              // wall: the thread has been signalled once
  uint32_t has_timer;
  uint32_t pending_ticks;           // wall: ticks seen with `pending` still set
  uint32_t signal_blocked;          // wall: the thread blocks the signal (SigBlk), checked once
  uint64_t pending_since_ns;        // wall: when the pending signal was sent
  timer_t timer;                    // (h) posix-timer engine
  uint64_t jitter_state;            // (h) cpu engines: random state of the next interval (cap_jitter.h)
  uint64_t next_cpu_ns;             // (h) posix-timer and cpu-ticker engines: CPU time (absolute) of the next sample
  _Atomic uint64_t pending_weight;  // (h) cpu ticker: intervals the pending signal stands for
} cap_thread;

/// One readable+writable mapping, [start, end).
typedef struct cap_range {
  uint64_t start;
  uint64_t end;
} cap_range;

typedef struct cap_range_set {
  _Atomic uint32_t readers;   // handlers currently searching this set
  uint32_t count;
  cap_range ranges[CAP_MAX_RANGES];  // sorted by start, non-overlapping
} cap_range_set;

/// One raw sample in the buffer.
typedef struct cap_slot {
  _Atomic uint32_t state;     // CAP_SLOT_*
  uint32_t reserved;
  cap_sample_header header;
  uint64_t frames[CAP_MAX_DEPTH];
} cap_slot;

/// The handler's counters (relaxed atomics), one field per CAP_COUNTERS
/// entry: cleared at once at start, copied out at once (cap_counters_copy).
typedef struct cap_counters {
#define CAP_COUNTER_FIELD(name) _Atomic uint64_t name;
  CAP_COUNTERS(CAP_COUNTER_FIELD)
#undef CAP_COUNTER_FIELD
} cap_counters;

/// One session per CAP_SESSION_* (cpu, wall, snapshot: the one-tick wall
/// sessions of thread dumps, and the flight recorder's cpu and wall), so a
/// cpu profile, a wall profile, a thread dump and the flight recorder run at
/// once. Perf events' signals carry no cookie: only the cpu session arms
/// them. Static objects (never unmapped), so a late signal can always read
/// `active` safely.
typedef struct cap_session {
  _Atomic int32_t active;            // (h) handler records only while 1
  _Atomic int32_t handlers_running;  // (h) handlers past the entry check
  int32_t mode;                      // CAP_MODE_*: what a sample measures
  int32_t engine;
  int32_t signal_number;
  _Atomic uint32_t generation;       // (h) cookie of this session's signals
  _Atomic int32_t pid;               // (h) getpid() at start, for SI_QUEUE senders (a late signal may read it while a new session writes it)
  uint64_t interval_ns;
  uint64_t idle_threshold_ns;        // wall: CPU time below which a thread "did not run"

  cap_thread *threads;
  uint32_t thread_capacity;          // power of two
  uint32_t thread_mask;

  cap_range_set *range_sets;         // [2]
  _Atomic uint32_t current_ranges;   // (h) index of the set handlers use
  _Atomic uint32_t ranges_stale;     // (h) set when a stack pointer was in no range

  cap_slot *slots;
  uint32_t slot_count;               // slots mapped
  // Slots in use: positions wrap at this count, so only these slots' pages
  // are ever touched (an always-on sampler keeps a few hundred KiB
  // resident, not slot_count × 2 KiB). The drain doubles it, up to
  // slot_count, when one drain finds it a quarter full.
  _Atomic uint32_t slots_in_use;     // (h)
  _Atomic uint64_t write_cursor;     // (h) next slot position to try
  uint64_t read_cursor;              // drain position (drain thread only)
  uint32_t rescan;                   // drains left that scan every slot (after growth; drain thread only)

  // Unwind tables (h, read only): sorted images of sorted rows.
  const cap_unwind_image *unwind_images;
  uint64_t unwind_image_count;
  // Swift concurrency (h, read only): executors to stitch at, task TLS slot.
  cap_async_config async;

  cap_counters counters;             // (h)
} cap_session;

extern cap_session cap_sessions[CAP_SESSION_COUNT];
/// (h) Ours but late: no running session has the signal's generation.
extern _Atomic uint64_t cap_stale_signals;

/// Handler side: claim a slot (never waits; NULL when none is free).
/// Points the ring at `slots` (`count` mapped, zeroed), empty, with
/// `initial` of them in use (clamped to [16, count]; 0: 256).
void cap_slots_reset(cap_session *session, cap_slot *slots, uint32_t count, uint32_t initial);
/// At least `wanted` slots in use from now on (up to slot_count). Not from
/// a signal handler; the drain thread must not be draining concurrently
/// unless it is the caller.
void cap_slots_grow(cap_session *session, uint32_t wanted);
cap_slot *cap_slot_acquire(cap_session *session);
/// Handler side: publish a claimed slot.
void cap_slot_commit(cap_slot *slot);
/// Handler side: find the entry of `tid`, or NULL.
cap_thread *cap_thread_find(cap_session *session, int32_t tid);

// MARK: - Signal disposition (signal_disposition.c)

/// The app's handler from before ours, per signal number, double-buffered:
/// `installed` (h) is the index + 1 of the saved action in use, 0 before the
/// first install. Written only off the signal path, under a mutex.
typedef struct cap_disposition {
  _Atomic uint32_t installed;
  struct sigaction previous[2];
} cap_disposition;

extern cap_disposition cap_dispositions[NSIG];
/// (h) Labels: see cap_labels_configure; the thread's own label set.
extern _Atomic uint64_t cap_labels_key;
extern _Atomic uint32_t cap_labels_head_offset;
extern __thread uint64_t cap_thread_labels __attribute__((tls_model("initial-exec")));
/// (h) signals that were not ours: chained to the app's handler, or dropped
/// where the app had none (SIG_DFL would kill the process).
extern _Atomic uint64_t cap_foreign_signals_chained;
extern _Atomic uint64_t cap_foreign_signals_ignored;
/// (h) 1 once any session armed perf events: a SIGPOLL-coded signal with
/// si_fd is then ours (F_SETSIG), never the app's.
extern _Atomic int32_t cap_perf_events_used;

/// Off the signal path: installs cap_signal_handler for `signal_number` unless
/// it is the current handler already, keeping whatever was there as the
/// handler to chain to. It stays installed for the life of the process.
/// Returns 0 or -errno.
int cap_signal_install(int signal_number);

/// Off the signal path: reads /proc/self/maps into the range set the
/// handlers are not using, then switches them over.
void cap_ranges_refresh(cap_session *session);
/// Off the signal path: copies finished samples of `session` (see cap_session_drain).
size_t cap_slots_drain(cap_session *session, void *out, size_t capacity, int full_scan);

/// Off the signal path: every counter of `counters` to 0 (before the session
/// is active).
static inline void cap_counters_clear(cap_counters *counters) {
#define CAP_COUNTER_CLEAR(name) atomic_store_explicit(&counters->name, 0, memory_order_relaxed);
  CAP_COUNTERS(CAP_COUNTER_CLEAR)
#undef CAP_COUNTER_CLEAR
}

/// Off the signal path: every counter into `out`.
static inline void cap_counters_copy(cap_counters *counters, cap_stats *out) {
#define CAP_COUNTER_COPY(name) out->name = atomic_load_explicit(&counters->name, memory_order_relaxed);
  CAP_COUNTERS(CAP_COUNTER_COPY)
#undef CAP_COUNTER_COPY
}

/// (h) Adds `n` to a counter.
#define CAP_COUNT(session, name, n) atomic_fetch_add_explicit(&(session)->counters.name, (n), memory_order_relaxed)

/// `clock` now in ns (async-signal-safe: clock_gettime).
static inline uint64_t cap_now_ns(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#endif
