// The lock sampler's wrappers: this code runs inside pthread_mutex_lock &
// co. of any thread, so it follows the signal handler's rules (no
// allocation, async-signal-safe calls only; checked by SignalSafetyTests
// with nm -u). See docs/locks.md for what is measured.
//
// Acquire: one try-lock first. Taken: done (the uncontended cost is that
// call). Busy: the wait is timed around the real call and recorded with the
// waiter's stack (CAP_SAMPLE_LOCK_WAIT: Go's block profile).
//
// Release: Go's mutex profile charges a wait to the unlock that ended it,
// with the holder's stack. Waiters of a lock are kept in a fixed table keyed
// by the lock's address: how many wait and the sum of when their uncharged
// wait began. An unlock that finds waiters charges them everything they
// waited since (waiters * now - sum; CAP_SAMPLE_LOCK_HOLD) and moves their
// start to now; a waiter leaving takes its own start out. glibc marks a
// mutex with possible waiters (its lock word is 2), so an unlock of an
// unmarked mutex costs one load; rwlocks have no such mark and look the
// table up (one hashed load when the lock is not in it).
//
// Sampling is by delay, as Go's SetBlockProfileRate: a delay of d ns is
// recorded with probability min(1, d / rate) and the Swift side divides it
// out. The table entry's own guard is a short spin, taken only on contended
// paths; a thread already inside a wrapper's slow path (`busy`: a signal
// handler that locks) skips the accounting, so it cannot spin on itself.
#define _GNU_SOURCE
#include "cap_platform.h"
#if CAP_HAVE_SAMPLER
#include "cap_caller.h"
#include "lock_internal.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <time.h>

// MARK: - State

cap_session cap_lock_session;
_Atomic uint64_t cap_lock_rate;
_Atomic uint32_t cap_lock_generation;
_Atomic uint64_t cap_lock_contentions;
_Atomic uint64_t cap_lock_untracked;

typedef struct cap_lock_thread {
  uint64_t random;        // xorshift state
  uint32_t busy;          // inside a slow path (recursion, signal handlers)
  uint32_t ignored;       // a profiler thread
  cap_stack_cache stack;  // where this thread's stack is (and its id)
} cap_lock_thread;

static __thread cap_lock_thread t_lock __attribute__((tls_model("initial-exec")));

/// Waiters of one lock. Entries are claimed for an address and never given
/// back (a lock's address is reused by the next lock there); the table is
/// static so that a waiter still blocked when a session ends finds it.
typedef struct cap_lock_entry {
  _Atomic uint64_t key;    // the lock's address, 0 while free
  _Atomic uint32_t guard;  // spin guard of the fields below
  uint32_t generation;     // the session they belong to
  uint64_t waiters;
  uint64_t start_sum;      // sum over waiters of when their uncharged wait began
  uint64_t charged_at;     // when an unlock last charged them
} cap_lock_entry;

enum { CAP_LOCK_TABLE_BITS = 12, CAP_LOCK_PROBES = 32 };
static cap_lock_entry g_locks[1u << CAP_LOCK_TABLE_BITS];
/// 1 once an rwlock was waited for: until then an rwlock unlock skips the table.
static _Atomic uint32_t g_rwlocks_tracked;

// MARK: - The real functions

typedef int (*mutex_fn)(pthread_mutex_t *);
typedef int (*mutex_timed_fn)(pthread_mutex_t *, const struct timespec *);
typedef int (*rwlock_fn)(pthread_rwlock_t *);

static mutex_fn real_mutex_lock, real_mutex_trylock, real_mutex_unlock;
static mutex_timed_fn real_mutex_timedlock;
static rwlock_fn real_rwlock_rdlock, real_rwlock_tryrdlock, real_rwlock_wrlock, real_rwlock_trywrlock,
    real_rwlock_unlock;
#define CAP_REAL(function) __atomic_load_n(&(function), __ATOMIC_ACQUIRE)
#define CAP_FRAME ((uint64_t)(uintptr_t)__builtin_frame_address(0))

// MARK: - The lock table

/// The entry of `lock`; claims one when `claim` (0 when the table is full).
static cap_lock_entry *cap_lock_find(const void *lock, int claim) {
  uint64_t key = (uint64_t)(uintptr_t)lock;
  uint32_t mask = (1u << CAP_LOCK_TABLE_BITS) - 1;
  uint32_t index = (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> (64 - CAP_LOCK_TABLE_BITS));
  for (uint32_t probe = 0; probe < CAP_LOCK_PROBES; probe++) {
    cap_lock_entry *entry = &g_locks[(index + probe) & mask];
    uint64_t current = atomic_load_explicit(&entry->key, memory_order_acquire);
    if (current == key) return entry;
    if (current != 0) continue;
    if (!claim) return 0;
    uint64_t expected = 0;
    if (atomic_compare_exchange_strong(&entry->key, &expected, key) || expected == key) return entry;
  }
  return 0;
}

/// Takes the entry's guard and brings it into session `generation`; 0 (the
/// guard held all the same) when the entry already belongs to a newer
/// session: a waiter of an older one leaves it alone.
static int cap_lock_enter(cap_lock_entry *entry, uint32_t generation) {
  uint32_t spins = 0;
  while (atomic_exchange_explicit(&entry->guard, 1, memory_order_acquire) != 0) {
    if (++spins > 64) sched_yield();
  }
  if (entry->generation == generation) return 1;
  if ((int32_t)(generation - entry->generation) < 0) return 0;
  entry->generation = generation;
  entry->waiters = 0;
  entry->start_sum = 0;
  entry->charged_at = 0;
  return 1;
}

static void cap_lock_leave(cap_lock_entry *entry) {
  atomic_store_explicit(&entry->guard, 0, memory_order_release);
}

// MARK: - Recording

/// Records a delay with the calling code's stack, with probability
/// min(1, delay / rate).
static void cap_lock_record(cap_lock_thread *t, uint64_t delay, uint16_t kind, uint64_t frame) {
  uint64_t rate = atomic_load_explicit(&cap_lock_rate, memory_order_relaxed);
  if (delay == 0) return;
  if (delay < rate) {
    uint64_t x = t->random;
    if (x == 0) x = ((uint64_t)(uintptr_t)t * 0x9E3779B97F4A7C15ull) ^ delay ^ 0x2545F4914F6CDD1Dull;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    t->random = x;
    if ((x >> 11) % rate >= delay) return;  // uniform in [0, rate) (rate ≪ 2^53)
  }
  cap_session *s = &cap_lock_session;
  atomic_fetch_add(&s->handlers_running, 1);
  if (atomic_load(&s->active)) {
    cap_slot *slot = cap_slot_acquire(s);
    if (slot != 0) {
      cap_capture_caller(s, &t->stack, frame, 0, 0, slot);
      slot->header.flags |= kind;
      slot->header.weight = delay;
      slot->header.object_type = 0;
      slot->header.heap_id = 0;
      cap_slot_commit(slot);
      CAP_COUNT(s, samples_written, 1);
    }
  }
  atomic_fetch_sub(&s->handlers_running, 1);
}

/// A contended acquisition: registers the wait, waits, records it.
/// `call` is the real call (its result goes to `result`); `frame` the
/// wrapper's frame record.
#define CAP_LOCK_WAIT(t, lock, frame, rwlock, call)                                   \
  do {                                                                                \
    (t)->busy = 1;                                                                    \
    uint32_t generation = atomic_load_explicit(&cap_lock_generation, memory_order_acquire); \
    uint64_t start = cap_now_ns(CLOCK_MONOTONIC);                                     \
    cap_lock_entry *entry = cap_lock_find((lock), 1);                                 \
    if (entry != 0) {                                                                 \
      if (rwlock) atomic_store_explicit(&g_rwlocks_tracked, 1, memory_order_relaxed); \
      int current = cap_lock_enter(entry, generation);                                \
      if (current) {                                                                  \
        entry->waiters++;                                                             \
        entry->start_sum += start;                                                    \
      }                                                                               \
      cap_lock_leave(entry);                                                          \
      if (!current) entry = 0;                                                        \
    } else {                                                                          \
      atomic_fetch_add_explicit(&cap_lock_untracked, 1, memory_order_relaxed);        \
    }                                                                                 \
    result = (call);                                                                  \
    uint64_t end = cap_now_ns(CLOCK_MONOTONIC);                                       \
    if (entry != 0) {                                                                 \
      if (cap_lock_enter(entry, generation) && entry->waiters > 0) {                  \
        entry->waiters--;                                                             \
        entry->start_sum -= start > entry->charged_at ? start : entry->charged_at;    \
      }                                                                               \
      cap_lock_leave(entry);                                                          \
    }                                                                                 \
    atomic_fetch_add_explicit(&cap_lock_contentions, 1, memory_order_relaxed);        \
    if (result == 0 || result == EOWNERDEAD) cap_lock_record((t), end - start, CAP_SAMPLE_LOCK_WAIT, (frame)); \
    (t)->busy = 0;                                                                    \
  } while (0)

/// The wait of `lock`'s waiters so far, moved to the calling holder's
/// account (0 when none is known to wait).
static uint64_t cap_lock_charge(const void *lock) {
  cap_lock_entry *entry = cap_lock_find(lock, 0);
  if (entry == 0) return 0;
  uint32_t generation = atomic_load_explicit(&cap_lock_generation, memory_order_acquire);
  uint64_t pending = 0;
  if (cap_lock_enter(entry, generation) && entry->waiters > 0) {
    uint64_t now = cap_now_ns(CLOCK_MONOTONIC);
    uint64_t due = entry->waiters * now;
    pending = due > entry->start_sum ? due - entry->start_sum : 0;
    entry->start_sum = due;
    entry->charged_at = now;
  }
  cap_lock_leave(entry);
  return pending;
}

/// An unlock of a lock that may have waiters: charges their wait so far to
/// the holder (the calling code), recorded once the lock is released (the
/// stack walk stays out of the critical section).
#define CAP_LOCK_RELEASE(lock, frame, call)                                  \
  do {                                                                       \
    cap_lock_thread *t = &t_lock;                                            \
    if (t->busy || t->ignored) return (call);                                \
    t->busy = 1;                                                             \
    uint64_t pending = cap_lock_charge(lock);                                \
    int result = (call);                                                     \
    if (pending > 0) cap_lock_record(t, pending, CAP_SAMPLE_LOCK_HOLD, (frame)); \
    t->busy = 0;                                                             \
    return result;                                                           \
  } while (0)

__attribute__((noinline)) static int cap_mutex_release(pthread_mutex_t *mutex, uint64_t frame) {
  CAP_LOCK_RELEASE(mutex, frame, CAP_REAL(real_mutex_unlock)(mutex));
}

__attribute__((noinline)) static int cap_rwlock_release(pthread_rwlock_t *lock, uint64_t frame) {
  CAP_LOCK_RELEASE(lock, frame, CAP_REAL(real_rwlock_unlock)(lock));
}

// MARK: - The wrappers

__attribute__((noinline)) static int cap_mutex_wait(pthread_mutex_t *mutex, const struct timespec *deadline,
                                                    uint64_t frame) {
  cap_lock_thread *t = &t_lock;
  int result;
  if (deadline != 0) {
    CAP_LOCK_WAIT(t, mutex, frame, 0, CAP_REAL(real_mutex_timedlock)(mutex, deadline));
  } else {
    CAP_LOCK_WAIT(t, mutex, frame, 0, CAP_REAL(real_mutex_lock)(mutex));
  }
  return result;
}

static int cap_hook_mutex_lock(pthread_mutex_t *mutex) {
  cap_lock_thread *t = &t_lock;
  if (__builtin_expect(t->busy | t->ignored, 0)) return CAP_REAL(real_mutex_lock)(mutex);
  // Every outcome but "held by another" is the one lock() gives too
  // (recursive re-entry, owner died, invalid).
  int result = CAP_REAL(real_mutex_trylock)(mutex);
  if (__builtin_expect(result != EBUSY, 1)) return result;
  return cap_mutex_wait(mutex, 0, CAP_FRAME);
}

static int cap_hook_mutex_timedlock(pthread_mutex_t *mutex, const struct timespec *deadline) {
  cap_lock_thread *t = &t_lock;
  if (__builtin_expect(t->busy | t->ignored, 0) || deadline == 0)
    return CAP_REAL(real_mutex_timedlock)(mutex, deadline);
  int result = CAP_REAL(real_mutex_trylock)(mutex);
  if (__builtin_expect(result != EBUSY, 1)) return result;
  return cap_mutex_wait(mutex, deadline, CAP_FRAME);
}

/// glibc's lock word: 0 free, 1 held, 2 held with possible waiters (other
/// kinds of mutex keep an owner's id there: looked up, never charged wrongly).
static inline int cap_mutex_may_have_waiters(pthread_mutex_t *mutex) {
#if defined(__GLIBC__)
  return __atomic_load_n(&mutex->__data.__lock, __ATOMIC_RELAXED) > 1 ||
         __atomic_load_n(&mutex->__data.__lock, __ATOMIC_RELAXED) < 0;
#else
  (void)mutex;
  return 1;
#endif
}

static int cap_hook_mutex_unlock(pthread_mutex_t *mutex) {
  if (__builtin_expect(cap_mutex_may_have_waiters(mutex), 0)) return cap_mutex_release(mutex, CAP_FRAME);
  mutex_fn real = CAP_REAL(real_mutex_unlock);
  __attribute__((musttail)) return real(mutex);
}

__attribute__((noinline)) static int cap_rwlock_wait(pthread_rwlock_t *lock, int write, uint64_t frame) {
  cap_lock_thread *t = &t_lock;
  int result;
  if (write) {
    CAP_LOCK_WAIT(t, lock, frame, 1, CAP_REAL(real_rwlock_wrlock)(lock));
  } else {
    CAP_LOCK_WAIT(t, lock, frame, 1, CAP_REAL(real_rwlock_rdlock)(lock));
  }
  return result;
}

static int cap_hook_rwlock_rdlock(pthread_rwlock_t *lock) {
  cap_lock_thread *t = &t_lock;
  if (__builtin_expect(t->busy | t->ignored, 0)) return CAP_REAL(real_rwlock_rdlock)(lock);
  int result = CAP_REAL(real_rwlock_tryrdlock)(lock);
  if (__builtin_expect(result != EBUSY, 1)) return result;
  return cap_rwlock_wait(lock, 0, CAP_FRAME);
}

static int cap_hook_rwlock_wrlock(pthread_rwlock_t *lock) {
  cap_lock_thread *t = &t_lock;
  if (__builtin_expect(t->busy | t->ignored, 0)) return CAP_REAL(real_rwlock_wrlock)(lock);
  int result = CAP_REAL(real_rwlock_trywrlock)(lock);
  if (__builtin_expect(result != EBUSY, 1)) return result;
  return cap_rwlock_wait(lock, 1, CAP_FRAME);
}

static int cap_hook_rwlock_unlock(pthread_rwlock_t *lock) {
  if (__builtin_expect(atomic_load_explicit(&g_rwlocks_tracked, memory_order_relaxed) != 0, 0))
    return cap_rwlock_release(lock, CAP_FRAME);
  rwlock_fn real = CAP_REAL(real_rwlock_unlock);
  __attribute__((musttail)) return real(lock);
}

// The try-lock functions are not redirected (a try never waits); they are
// listed with no wrapper so that their real addresses are resolved.
static cap_hook cap_lock_hooks[] = {
    {"pthread_mutex_lock", (void *)cap_hook_mutex_lock, (void **)&real_mutex_lock},
    {"pthread_mutex_timedlock", (void *)cap_hook_mutex_timedlock, (void **)&real_mutex_timedlock},
    {"pthread_mutex_unlock", (void *)cap_hook_mutex_unlock, (void **)&real_mutex_unlock},
    {"pthread_rwlock_rdlock", (void *)cap_hook_rwlock_rdlock, (void **)&real_rwlock_rdlock},
    {"pthread_rwlock_wrlock", (void *)cap_hook_rwlock_wrlock, (void **)&real_rwlock_wrlock},
    {"pthread_rwlock_unlock", (void *)cap_hook_rwlock_unlock, (void **)&real_rwlock_unlock},
};
cap_hook_set cap_lock_hook_set = {cap_lock_hooks, sizeof cap_lock_hooks / sizeof cap_lock_hooks[0], 0, 0, 0, 0};

/// The try-lock functions the wrappers call first.
static cap_hook cap_lock_try_hooks[] = {
    {"pthread_mutex_trylock", 0, (void **)&real_mutex_trylock},
    {"pthread_rwlock_tryrdlock", 0, (void **)&real_rwlock_tryrdlock},
    {"pthread_rwlock_trywrlock", 0, (void **)&real_rwlock_trywrlock},
};
cap_hook_set cap_lock_try_set = {cap_lock_try_hooks, sizeof cap_lock_try_hooks / sizeof cap_lock_try_hooks[0], 0, 0, 0, 0};

// MARK: - The calling thread's state

void cap_lock_thread_forked(void) {
  t_lock.stack.tid = 0;
  t_lock.busy = 0;
}

int cap_lock_set_thread_ignored(int ignored) {
  int previous = (int)t_lock.ignored;
  t_lock.ignored = ignored ? 1 : 0;
  return previous;
}

#endif  // CAP_HAVE_SAMPLER
