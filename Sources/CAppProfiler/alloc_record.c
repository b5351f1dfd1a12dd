// The allocation sampler's wrappers and recording: this code runs inside
// malloc & co. of any thread, so it follows the signal handler's rules (no
// locks, no allocation, async-signal-safe calls only; checked by
// SignalSafetyTests with nm -u). See alloc_linux.c for the design.
#define _GNU_SOURCE
#include "cap_platform.h"
#if CAP_HAVE_SAMPLER
#include "alloc_internal.h"
#include "cap_stack.h"
#include "unwind_cfi.h"
#include "unwind_fp.h"

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
  uint64_t stack_start; // the mapping that held this thread's stack when last looked up
  uint64_t stack_end;
  int32_t tid;          // cached: a thread's id never changes (fork: see the atfork handler)
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

static int cap_parse_hex(const char **cursor, const char *end, uint64_t *value) {
  uint64_t result = 0;
  int digits = 0;
  const char *p = *cursor;
  while (p < end) {
    char c = *p;
    uint64_t digit;
    if (c >= '0' && c <= '9') digit = (uint64_t)(c - '0');
    else if (c >= 'a' && c <= 'f') digit = (uint64_t)(c - 'a' + 10);
    else break;
    result = (result << 4) | digit;
    digits++;
    p++;
  }
  *cursor = p;
  *value = result;
  return digits > 0;
}

/// The readable+writable mapping that holds `sp`, read from /proc/self/maps
/// with a buffer on the stack (no allocation: this runs inside malloc). For a
/// thread started after the session's snapshot; once per thread, then cached.
static int cap_find_stack_mapping(uint64_t sp, uint64_t *start, uint64_t *end) {
  int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buffer[4096];
  size_t kept = 0;
  int found = 0;
  while (!found) {
    ssize_t n = read(fd, buffer + kept, sizeof buffer - kept);
    if (n <= 0) break;
    size_t filled = kept + (size_t)n;
    size_t line_start = 0;
    for (size_t i = 0; i < filled; i++) {
      if (buffer[i] != '\n') continue;
      const char *cursor = buffer + line_start;
      const char *line_end = buffer + i;
      uint64_t low = 0, high = 0;
      if (cap_parse_hex(&cursor, line_end, &low) && cursor < line_end && *cursor == '-') {
        cursor++;
        if (cap_parse_hex(&cursor, line_end, &high) && line_end - cursor >= 3 && cursor[1] == 'r' &&
            cursor[2] == 'w' && sp >= low && sp < high) {
          *start = low;
          *end = high;
          found = 1;
          break;
        }
      }
      line_start = i + 1;
    }
    if (found) break;
    kept = filled - line_start;
    if (kept == sizeof buffer) kept = 0;  // a line longer than the buffer: skip it
    memmove(buffer, buffer + line_start, kept);
  }
  close(fd);
  return found;
}

/// Bounds of the calling thread's stack above `sp`: the thread's cached
/// mapping, else the session's snapshot, else /proc/self/maps.
static int cap_alloc_stack_bounds(cap_alloc_thread *t, cap_session *s, uint64_t sp, uint64_t *low,
                                  uint64_t *high) {
  if (sp >= t->stack_start && sp < t->stack_end) {
    *low = sp;
    *high = t->stack_end;
    return 1;
  }
  if (cap_stack_bounds(s, sp, low, high)) {
    t->stack_start = sp;
    t->stack_end = *high;
    return 1;
  }
  uint64_t start = 0, end = 0;
  if (!cap_find_stack_mapping(sp, &start, &end)) return 0;
  t->stack_start = start;
  t->stack_end = end;
  *low = sp;
  *high = end;
  return 1;
}

/// `frame` is the wrapper's frame record: [frame] = caller's frame pointer,
/// [frame + 8] = return address into the allocating code.
///
/// With CFI tables the walk starts here, at this function's own registers,
/// so that r14 (the Swift async context of a frameless partial function
/// that allocates) is tracked through the wrapper's frames like everything
/// else; the profiler's frames are then dropped up to that return address.
static void cap_alloc_record(cap_alloc_thread *t, size_t size, uint64_t type, uint64_t address, uint64_t frame) {
  cap_session *s = &cap_alloc_session;
  atomic_fetch_add(&s->handlers_running, 1);
  if (!atomic_load(&s->active)) {
    atomic_fetch_sub(&s->handlers_running, 1);
    return;
  }
  cap_slot *slot = cap_slot_acquire(s);
  if (slot != 0) {
    const uint64_t *record = (const uint64_t *)(uintptr_t)frame;
    uint64_t pc = record[1];
    uint64_t fp = record[0];
    uint64_t sp = frame + 16;
    uint16_t flags = CAP_SAMPLE_ALLOCATION;
    uint64_t low = 0, high = 0;
    uint32_t depth = 0;
    int walked = 0;
    cap_range_set *set = cap_ranges_hold(s);
    cap_async_walk walk = {0};
    uint64_t task = 0, labels = 0;
    cap_sample_context(s, set, &walk, &task, &labels);
#if defined(__x86_64__)
    if (s->unwind_image_count > 0) {
      uint64_t here_pc, here_sp, here_fp, here_r14;
      __asm__ volatile("lea 0(%%rip), %0\n\tmov %%rsp, %1\n\tmov %%rbp, %2\n\tmov %%r14, %3"
                       : "=&r"(here_pc), "=&r"(here_sp), "=&r"(here_fp), "=&r"(here_r14));
      if (cap_alloc_stack_bounds(t, s, here_sp, &low, &high)) {
        int truncated = 0, complete = 0;
        depth = cap_unwind_cfi(s->unwind_images, s->unwind_image_count, here_pc, here_sp, here_fp, here_r14,
                               walk.executor_count > 0 ? &walk : 0, low, high, slot->frames, CAP_MAX_DEPTH,
                               &truncated, &complete);
        uint32_t skip = 0;
        while (skip < depth && skip < 8 && slot->frames[skip] != pc) skip++;
        if (skip < depth && slot->frames[skip] == pc) {
          // A Swift object's allocation met inside the runtime: its frames
          // (swift_slowAlloc, swift_allocObject) go, its caller is the leaf.
          while (type != 0 && skip + 1 < depth && slot->frames[skip] >= cap_alloc_swift_core_text_start &&
                 slot->frames[skip] < cap_alloc_swift_core_text_end)
            skip++;
          for (uint32_t i = skip; i < depth; i++) slot->frames[i - skip] = slot->frames[i];
          depth -= skip;
          walked = 1;
          if (truncated) flags |= CAP_SAMPLE_TRUNCATED;
          if (complete) {
            flags |= CAP_SAMPLE_COMPLETE;
            atomic_fetch_add_explicit(&s->complete_samples, 1, memory_order_relaxed);
          }
        } else {
          walk.stitched = walk.broken = 0;
        }
      }
    }
#endif
    if (!walked) {
      if (cap_alloc_stack_bounds(t, s, sp, &low, &high)) {
        int truncated = 0;
#if defined(__x86_64__)
        if (s->unwind_image_count > 0) {
          int complete = 0;
          depth = cap_unwind_cfi(s->unwind_images, s->unwind_image_count, pc, sp, fp, 0, 0, low, high,
                                 slot->frames, CAP_MAX_DEPTH, &truncated, &complete);
          if (complete) {
            flags |= CAP_SAMPLE_COMPLETE;
            atomic_fetch_add_explicit(&s->complete_samples, 1, memory_order_relaxed);
          }
        } else
#endif
        {
          depth = cap_unwind_fp(pc, fp, low, high, slot->frames, CAP_MAX_DEPTH, &truncated);
        }
        if (truncated) flags |= CAP_SAMPLE_TRUNCATED;
      } else {
        slot->frames[0] = pc;
        depth = 1;
        flags |= CAP_SAMPLE_NO_STACK_BOUNDS;
      }
    }
    cap_ranges_release(set);
    cap_sample_context_end(s, &walk);
    slot->header.task = task;
    slot->header.labels = labels;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    slot->header.timestamp_ns = (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
    slot->header.weight = size;
    if (t->tid == 0) t->tid = (int32_t)syscall(SYS_gettid);
    slot->header.tid = t->tid;
    slot->header.depth = (uint16_t)depth;
    slot->header.flags = flags;
    slot->header.object_type = type;
    // Into the live-heap set before the sample is visible: a drained sample
    // whose id is not in the set was freed.
    slot->header.heap_id = cap_heap_insert(address);
    cap_slot_commit(slot);
    atomic_fetch_add_explicit(&s->samples_written, 1, memory_order_relaxed);
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

/// A shared libswiftCore's code (set by cap_alloc_choose_wrappers).
uint64_t cap_alloc_swift_core_text_start;
uint64_t cap_alloc_swift_core_text_end;

/// The one-wrapper swift_allocObject (cap_alloc_choose_wrappers).
void *const cap_alloc_swift_object_direct = (void *)cap_hook_swift_alloc_object;

// MARK: - The calling thread's state

void cap_alloc_thread_forked(void) { t_alloc.tid = 0; }

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
