// The allocation sampler's wrappers and recording: this code runs inside
// malloc & co. of any thread, so it follows the signal handler's rules (no
// locks, no allocation, async-signal-safe calls only; checked by
// SignalSafetyTests with nm -u). See alloc_linux.c for the design.
#define _GNU_SOURCE
#include "cap_platform.h"
#if CAP_HAVE_SAMPLER
#include "alloc_internal.h"
#include "cap_caller.h"

#include <fcntl.h>
#include <math.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

// MARK: - State

cap_session cap_alloc_session;
_Atomic uint64_t cap_alloc_mean;        // bytes
_Atomic uint32_t cap_alloc_generation;  // bumped by each start: threads redraw

typedef struct cap_alloc_thread {
  int64_t countdown;    // bytes until the next sample
  uint64_t random;      // xorshift state
  uint64_t calls;       // wrapper calls (tests)
  uint32_t generation;  // session the countdown was drawn for
  uint32_t busy;        // inside a wrapper's real call or recording
  uint32_t ignored;     // a profiler thread
  uint64_t pending_type;  // swift_allocObject's metadata, for the malloc inside it
  uint64_t pending_size;  // …and its size (0: none pending)
  cap_stack_cache stack;  // where this thread's stack is (and its id)
} cap_alloc_thread;

static __thread cap_alloc_thread t_alloc __attribute__((tls_model("initial-exec")));

// MARK: - The real functions

typedef void *(*malloc_fn)(size_t);
typedef void *(*calloc_fn)(size_t, size_t);
typedef void *(*realloc_fn)(void *, size_t);
typedef int (*posix_memalign_fn)(void **, size_t, size_t);
typedef void *(*aligned_alloc_fn)(size_t, size_t);
typedef void *(*swift_alloc_object_fn)(const void *, size_t, size_t);
typedef void (*free_fn)(void *);

static malloc_fn real_malloc;
static calloc_fn real_calloc;
static realloc_fn real_realloc;
static posix_memalign_fn real_posix_memalign;
static aligned_alloc_fn real_aligned_alloc;
static aligned_alloc_fn real_memalign;
static swift_alloc_object_fn real_swift_alloc_object;
static free_fn real_free;
// Written (release) once by cap_resolve_real_functions before any GOT entry
// points at a wrapper; the wrappers read them with acquire, which is a plain
// load on x86_64 and gives ThreadSanitizer the happens-before it checks.
#define CAP_REAL(function) __atomic_load_n(&(function), __ATOMIC_ACQUIRE)

// MARK: - Recording (runs inside the allocation functions)

static uint64_t cap_alloc_draw(cap_alloc_thread *t) {
  uint64_t x = t->random;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  t->random = x;
  double uniform = (double)((x >> 11) + 1) * (1.0 / 9007199254740992.0);  // (0, 1]
  double mean = (double)atomic_load_explicit(&cap_alloc_mean, memory_order_relaxed);
  double next = -log(uniform) * mean;
  if (next > 4.0e18) next = 4.0e18;
  return (uint64_t)next + 1;
}

/// `frame` is the wrapper's frame record: [frame] = caller's frame pointer,
/// [frame + 8] = return address into the allocating code.
static void cap_alloc_record(cap_alloc_thread *t, size_t size, uint64_t type, uint64_t address, uint64_t frame) {
  cap_session *s = &cap_alloc_session;
  atomic_fetch_add(&s->handlers_running, 1);
  if (!atomic_load(&s->active)) {
    atomic_fetch_sub(&s->handlers_running, 1);
    return;
  }
  cap_slot *slot = cap_slot_acquire(s);
  if (slot != 0) {
    // A Swift object's allocation met inside the runtime: its frames
    // (swift_slowAlloc, swift_allocObject) go, its caller is the leaf.
    uint64_t drop_start = type != 0 ? cap_alloc_swift_core_text_start : 0;
    uint64_t drop_end = type != 0 ? cap_alloc_swift_core_text_end : 0;
    cap_capture_caller(s, &t->stack, frame, drop_start, drop_end, slot);
    slot->header.flags |= CAP_SAMPLE_ALLOCATION;
    slot->header.weight = size;
    slot->header.object_type = type;
    // Into the live-heap set before the sample is visible: a drained sample
    // whose id is not in the set was freed.
    slot->header.heap_id = cap_heap_insert(address);
    cap_slot_commit(slot);
    CAP_COUNT(s, samples_written, 1);
  }
  atomic_fetch_sub(&s->handlers_running, 1);
}

/// The countdown crossed zero (or belongs to an older session).
__attribute__((noinline)) static void cap_alloc_slow(cap_alloc_thread *t, size_t size, uint64_t type,
                                                     uint64_t address, uint64_t frame) {
  if (t->ignored) {
    t->countdown = INT64_MAX;
    return;
  }
  uint32_t generation = atomic_load_explicit(&cap_alloc_generation, memory_order_acquire);
  if (t->generation != generation) {
    // First allocation of this thread in this session: draw a countdown and
    // charge this allocation against it.
    t->generation = generation;
    if (t->random == 0) {
      t->random = ((uint64_t)(uintptr_t)t * 0x9E3779B97F4A7C15ull) ^ (uint64_t)syscall(SYS_gettid) ^
                  ((uint64_t)generation << 32) ^ 0x2545F4914F6CDD1Dull;
      if (t->random == 0) t->random = 1;
    }
    int64_t start = (int64_t)cap_alloc_draw(t);
    t->countdown = start - (int64_t)(size > (size_t)INT64_MAX ? INT64_MAX : size);
    if (t->countdown > 0) return;
  }
  t->countdown = (int64_t)cap_alloc_draw(t);
  t->busy = 1;
  cap_alloc_record(t, size, type, address, frame);
  t->busy = 0;
}

/// Counts `size` against the calling thread's countdown before the call:
/// 1 when this allocation is to be recorded (the countdown crossed zero or
/// belongs to an older session). Nested calls (busy) are not counted. The
/// common case then tail-calls the real function: no frame of ours stays
/// on the stack, no second return.
#define CAP_ALLOC_DUE(t, size) \
  ((t)->calls++, (t)->busy == 0 && ((t)->countdown -= (int64_t)(size)) <= 0)

/// Records the allocation at `result` (the slow path, after the real call);
/// `frame` is the wrapper's frame record (its return address: the caller's).
#define CAP_ALLOC_RECORD_AT(t, size, type, result, frame)                                   \
  do {                                                                                      \
    if ((result) != 0) cap_alloc_slow((t), (size), (type), (uint64_t)(uintptr_t)(result), (frame)); \
  } while (0)
#define CAP_ALLOC_RECORD(t, size, type, result) \
  CAP_ALLOC_RECORD_AT(t, size, type, result, (uint64_t)(uintptr_t)__builtin_frame_address(0))
#define CAP_FRAME ((uint64_t)(uintptr_t)__builtin_frame_address(0))

// The hottest wrappers: the common case tail-calls the real function; the
// sampled case calls a function of its own with the wrapper's frame record
// (whose return address is the caller's, where the recording starts).

/// The type a swift_allocObject wrapper left for the allocation inside it
/// (same thread, same size: swift_slowAlloc passes the size on), taken once.
#define CAP_ALLOC_TAKE_TYPE(t, size, type)                                 \
  do {                                                                     \
    if (__builtin_expect((t)->pending_size != 0, 0)) {                     \
      if ((t)->pending_size == (size)) (type) = (t)->pending_type;         \
      (t)->pending_size = 0;                                               \
    }                                                                      \
  } while (0)

__attribute__((noinline)) static void *cap_malloc_sampled(size_t size, uint64_t type, uint64_t frame) {
  cap_alloc_thread *t = &t_alloc;
  void *result = CAP_REAL(real_malloc)(size);
  CAP_ALLOC_RECORD_AT(t, size, type, result, frame);
  return result;
}

static void *cap_hook_malloc(size_t size) {
  cap_alloc_thread *t = &t_alloc;
  uint64_t type = 0;
  CAP_ALLOC_TAKE_TYPE(t, size, type);
  if (__builtin_expect(!CAP_ALLOC_DUE(t, size), 1)) {
    malloc_fn real = CAP_REAL(real_malloc);
    __attribute__((musttail)) return real(size);
  }
  return cap_malloc_sampled(size, type, CAP_FRAME);
}

__attribute__((noinline)) static void *cap_calloc_sampled(size_t count, size_t size, uint64_t frame) {
  cap_alloc_thread *t = &t_alloc;
  void *result = CAP_REAL(real_calloc)(count, size);
  CAP_ALLOC_RECORD_AT(t, count * size, 0, result, frame);
  return result;
}

static void *cap_hook_calloc(size_t count, size_t size) {
  cap_alloc_thread *t = &t_alloc;
  if (__builtin_expect(!CAP_ALLOC_DUE(t, count * size), 1)) return CAP_REAL(real_calloc)(count, size);
  return cap_calloc_sampled(count, size, CAP_FRAME);
}

/// The old block leaves the set before the call (afterwards its address may
/// already be another thread's); the new one is a new allocation. A failed
/// realloc keeps its block but it is no longer counted in use (rare).
static void *cap_hook_realloc(void *pointer, size_t size) {
  if (pointer != 0) cap_heap_forget((uint64_t)(uintptr_t)pointer);
  cap_alloc_thread *t = &t_alloc;
  if (size == 0 || __builtin_expect(!CAP_ALLOC_DUE(t, size), 1)) return CAP_REAL(real_realloc)(pointer, size);
  void *result = CAP_REAL(real_realloc)(pointer, size);
  CAP_ALLOC_RECORD(t, size, 0, result);
  return result;
}

static int cap_hook_posix_memalign(void **out, size_t alignment, size_t size) {
  cap_alloc_thread *t = &t_alloc;
  uint64_t type = 0;
  CAP_ALLOC_TAKE_TYPE(t, size, type);
  if (__builtin_expect(!CAP_ALLOC_DUE(t, size), 1)) return CAP_REAL(real_posix_memalign)(out, alignment, size);
  int result = CAP_REAL(real_posix_memalign)(out, alignment, size);
  if (result == 0) CAP_ALLOC_RECORD(t, size, type, *out);
  return result;
}

static void *cap_hook_aligned_alloc(size_t alignment, size_t size) {
  cap_alloc_thread *t = &t_alloc;
  uint64_t type = 0;
  CAP_ALLOC_TAKE_TYPE(t, size, type);
  if (__builtin_expect(!CAP_ALLOC_DUE(t, size), 1)) return CAP_REAL(real_aligned_alloc)(alignment, size);
  void *result = CAP_REAL(real_aligned_alloc)(alignment, size);
  CAP_ALLOC_RECORD(t, size, type, result);
  return result;
}

static void *cap_hook_memalign(size_t alignment, size_t size) {
  cap_alloc_thread *t = &t_alloc;
  uint64_t type = 0;
  CAP_ALLOC_TAKE_TYPE(t, size, type);
  if (__builtin_expect(!CAP_ALLOC_DUE(t, size), 1)) return CAP_REAL(real_memalign)(alignment, size);
  void *result = CAP_REAL(real_memalign)(alignment, size);
  CAP_ALLOC_RECORD(t, size, type, result);
  return result;
}

/// Every free: a sampled block leaves the live-heap set (before the memory
/// is given back: see cap_heap_forget).
static void cap_hook_free(void *pointer) {
  if (pointer != 0) cap_heap_forget((uint64_t)(uintptr_t)pointer);
  free_fn real = CAP_REAL(real_free);
  __attribute__((musttail)) return real(pointer);
}

/// Swift class instances, array/string/dictionary storage, closure contexts
/// allocated by compiled Swift code: one wrapper per object. When the
/// runtime is a shared library (libswiftCore.so, redirected like every
/// image), this wrapper only leaves the type for the allocation inside
/// swift_allocObject and tail-calls it; the malloc wrapper there counts and
/// records it, with the type, and the recording drops the runtime's frames
/// above the caller.
static void *cap_hook_swift_alloc_object(const void *metadata, size_t size, size_t alignment_mask) {
  cap_alloc_thread *t = &t_alloc;
  t->pending_type = (uint64_t)(uintptr_t)metadata;
  t->pending_size = size;
  // A tail call in every build: no frame of ours between the runtime's and
  // the caller's (the recording drops the runtime's).
  swift_alloc_object_fn real = CAP_REAL(real_swift_alloc_object);
  __attribute__((musttail)) return real(metadata, size, alignment_mask);
}

/// The same when the runtime is linked into an image whose malloc calls are
/// redirected (-static-stdlib): the inner malloc is not counted again (busy).
static void *cap_hook_swift_alloc_object_nested(const void *metadata, size_t size, size_t alignment_mask) {
  cap_alloc_thread *t = &t_alloc;
  uint32_t was_busy = t->busy;
  int due = CAP_ALLOC_DUE(t, size);
  t->busy = 1;
  void *result = CAP_REAL(real_swift_alloc_object)(metadata, size, alignment_mask);
  t->busy = was_busy;
  if (due) CAP_ALLOC_RECORD(t, size, (uint64_t)(uintptr_t)metadata, result);
  return result;
}

cap_hook cap_alloc_hooks[] = {
    {"malloc", (void *)cap_hook_malloc, (void **)&real_malloc},
    {"calloc", (void *)cap_hook_calloc, (void **)&real_calloc},
    {"realloc", (void *)cap_hook_realloc, (void **)&real_realloc},
    {"posix_memalign", (void *)cap_hook_posix_memalign, (void **)&real_posix_memalign},
    {"aligned_alloc", (void *)cap_hook_aligned_alloc, (void **)&real_aligned_alloc},
    {"memalign", (void *)cap_hook_memalign, (void **)&real_memalign},
    {"swift_allocObject", (void *)cap_hook_swift_alloc_object_nested, (void **)&real_swift_alloc_object},
    {"free", (void *)cap_hook_free, (void **)&real_free},
};
const size_t cap_alloc_hook_count = sizeof cap_alloc_hooks / sizeof cap_alloc_hooks[0];
cap_hook_set cap_alloc_hook_set = {cap_alloc_hooks, sizeof cap_alloc_hooks / sizeof cap_alloc_hooks[0], 0, 0, 0, 1};

/// A shared libswiftCore's code (set by cap_alloc_choose_wrappers).
uint64_t cap_alloc_swift_core_text_start;
uint64_t cap_alloc_swift_core_text_end;

/// The one-wrapper swift_allocObject (cap_alloc_choose_wrappers).
void *const cap_alloc_swift_object_direct = (void *)cap_hook_swift_alloc_object;

// MARK: - The calling thread's state

void cap_alloc_thread_forked(void) { t_alloc.stack.tid = 0; }

uint64_t cap_alloc_thread_calls(void) { return t_alloc.calls; }

int cap_alloc_set_thread_ignored(int ignored) {
  int previous = (int)t_alloc.ignored;
  t_alloc.ignored = ignored ? 1 : 0;
  if (!ignored) {
    // Draw a fresh countdown at the next allocation.
    t_alloc.countdown = 0;
    t_alloc.generation = 0;
  }
  return previous;
}

#endif  // CAP_HAVE_SAMPLER
