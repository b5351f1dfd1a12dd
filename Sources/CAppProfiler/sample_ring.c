// The lock-free sample buffer: `slot_count` slots of cap_slot in memory
// mapped before the session. cap_slot_acquire/cap_slot_commit are callable
// from the signal handler and the allocation wrappers: a claim is one
// compare-and-swap and never waits (a full buffer is a counted drop). The
// drain copies finished slots out on the drain thread.
#include "cap_platform.h"
#if CAP_HAVE_SAMPLER
#include "cap_session.h"

#include <string.h>

void cap_slots_reset(cap_session *s, cap_slot *slots, uint32_t count, uint32_t initial) {
  if (initial == 0) initial = 256;
  if (initial < 16) initial = 16;
  if (initial > count) initial = count;
  s->slots = slots;
  s->slot_count = count;
  atomic_store(&s->slots_in_use, initial);
  atomic_store(&s->write_cursor, 0);
  s->read_cursor = 0;
  s->rescan = 0;
}

void cap_slots_grow(cap_session *s, uint32_t wanted) {
  uint32_t in_use = atomic_load(&s->slots_in_use);
  if (wanted > s->slot_count) wanted = s->slot_count;
  if (wanted <= in_use) return;
  atomic_store(&s->slots_in_use, wanted);
  // Positions now map to other slots: samples written at the old mapping
  // are found by a scan of every slot in use — on the next two drains, for
  // a writer that read the old count just before this store.
  s->rescan = 2;
}

cap_slot *cap_slot_acquire(cap_session *s) {
  // A few tries at consecutive positions; a slot still being drained or
  // written is skipped, never waited for.
  uint32_t in_use = atomic_load_explicit(&s->slots_in_use, memory_order_relaxed);
  if (in_use == 0) return 0;
  for (int attempt = 0; attempt < 8; attempt++) {
    uint64_t position = atomic_fetch_add_explicit(&s->write_cursor, 1, memory_order_relaxed);
    cap_slot *slot = &s->slots[position % in_use];
    uint32_t expected = CAP_SLOT_EMPTY;
    if (atomic_compare_exchange_strong_explicit(&slot->state, &expected, CAP_SLOT_WRITING,
                                                memory_order_acquire, memory_order_relaxed)) {
      return slot;
    }
  }
  CAP_COUNT(s, samples_dropped, 1);
  return 0;
}

void cap_slot_commit(cap_slot *slot) {
  atomic_store_explicit(&slot->state, CAP_SLOT_FULL, memory_order_release);
}

static size_t copy_slot(cap_slot *slot, char *out, size_t capacity, size_t used, int *full) {
  uint32_t depth = slot->header.depth;
  if (depth > CAP_MAX_DEPTH) depth = CAP_MAX_DEPTH;
  size_t bytes = sizeof(cap_sample_header) + (size_t)depth * sizeof(uint64_t);
  if (used + bytes > capacity) {
    *full = 1;
    return 0;
  }
  memcpy(out + used, &slot->header, sizeof(cap_sample_header));
  memcpy(out + used + sizeof(cap_sample_header), slot->frames, (size_t)depth * sizeof(uint64_t));
  atomic_store_explicit(&slot->state, CAP_SLOT_EMPTY, memory_order_release);
  return bytes;
}

size_t cap_slots_drain(cap_session *s, void *out_pointer, size_t capacity, int full_scan) {
  char *out = (char *)out_pointer;
  size_t used = 0;
  int full = 0;
  uint32_t in_use = atomic_load(&s->slots_in_use);
  // Slots past the count in use were never written.
  if (full_scan || s->rescan) {
    if (s->rescan > 0) s->rescan--;
    for (uint32_t i = 0; i < in_use && !full; i++) {
      cap_slot *slot = &s->slots[i];
      if (atomic_load_explicit(&slot->state, memory_order_acquire) == CAP_SLOT_FULL) {
        used += copy_slot(slot, out, capacity, used, &full);
      }
    }
    if (full && s->rescan == 0) s->rescan = 1;  // the rest on the next call
    return used;
  }
  // Positions are claimed in increasing order, so the finished samples are
  // (almost all) between the read and write cursors. A slot skipped here
  // because it was still being written is picked up by a later full scan.
  uint64_t end = atomic_load(&s->write_cursor);
  uint64_t position = s->read_cursor;
  if (end - position > in_use) position = end - in_use;
  uint32_t copied = 0;
  for (; position < end; position++) {
    cap_slot *slot = &s->slots[position % in_use];
    if (atomic_load_explicit(&slot->state, memory_order_acquire) == CAP_SLOT_FULL) {
      size_t bytes = copy_slot(slot, out, capacity, used, &full);
      if (full) break;
      used += bytes;
      copied++;
    }
  }
  s->read_cursor = position;
  // A quarter of the ring filled between two drains: room for bursts.
  if ((uint64_t)copied * 4 > in_use || full) cap_slots_grow(s, in_use * 2);
  return used;
}

#endif  // CAP_HAVE_SAMPLER
