// The session's thread table: open addressing keyed by tid
// (probe (tid * 2654435761) & mask, then linear). cap_thread_find is
// callable from the signal handler (no locks, no allocation); insertion is
// the ticker's alone.
#include "cap_platform.h"
#if CAP_HAVE_SAMPLER
#include "cap_session.h"

cap_thread *cap_thread_find(cap_session *s, int32_t tid) {
  if (s->threads == 0 || tid <= 0) return 0;
  uint32_t index = ((uint32_t)tid * 2654435761u) & s->thread_mask;
  for (uint32_t probe = 0; probe < CAP_MAX_PROBES; probe++) {
    cap_thread *t = &s->threads[(index + probe) & s->thread_mask];
    int32_t current = atomic_load_explicit(&t->tid, memory_order_acquire);
    if (current == tid) return t;
    if (current == CAP_TID_EMPTY) return 0;
  }
  return 0;
}

cap_thread *cap_thread_insert(cap_session *s, int32_t tid) {
  uint32_t index = ((uint32_t)tid * 2654435761u) & s->thread_mask;
  for (uint32_t probe = 0; probe < CAP_MAX_PROBES; probe++) {
    cap_thread *t = &s->threads[(index + probe) & s->thread_mask];
    int32_t current = atomic_load(&t->tid);
    if (current == CAP_TID_EMPTY || current == CAP_TID_TOMBSTONE) {
      atomic_store(&t->perf_fd, -1);
      atomic_store(&t->pending, 0);
      atomic_store(&t->pending_flags, 0);
      atomic_store(&t->handler_cpu_ns, 0);
      t->last_cpu_ns = 0;
      t->repeat_count = 0;
      t->repeat_first_ns = 0;
      t->repeat_flags = 0;
      t->has_sample = 0;
      t->has_timer = 0;
      atomic_store_explicit(&t->tid, tid, memory_order_release);
      return t;
    }
  }
  return 0;
}

#endif  // CAP_HAVE_SAMPLER
