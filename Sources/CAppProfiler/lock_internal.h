// What the two parts of the lock sampler share:
//   lock_record.c  the wrappers, the lock table and the recording (runs
//                  inside pthread_mutex_lock & co. of any thread)
//   lock_linux.c   the lifecycle called from Swift
// The GOT redirection is got_patch_linux.c's, as for the allocation sampler.
#ifndef CAP_LOCK_INTERNAL_H
#define CAP_LOCK_INTERNAL_H

#include "cap_session.h"
#include "got_patch.h"
#include <stdatomic.h>
#include <stdint.h>

/// The lock sampler's session: ring, stack-bounds snapshot, unwind tables.
extern cap_session cap_lock_session;
/// A delay of d ns is recorded with probability min(1, d / rate).
extern _Atomic uint64_t cap_lock_rate;
/// Bumped by each start: the lock table's entries of older sessions are stale.
extern _Atomic uint32_t cap_lock_generation;
extern _Atomic uint64_t cap_lock_contentions;
extern _Atomic uint64_t cap_lock_untracked;
/// The lock wrappers as the GOT walk takes them.
extern cap_hook_set cap_lock_hook_set;
/// The try-lock functions the wrappers call first (resolved, not redirected).
extern cap_hook_set cap_lock_try_set;

/// After fork(): the child's only thread has a new id.
void cap_lock_thread_forked(void);

#endif
