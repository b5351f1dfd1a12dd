// The allocation sampler: wrappers around the allocation functions, and the
// GOT patching that routes calls to them only while a session runs.
//
// Attach and detach at run time, with nothing intercepted outside a session:
// each loaded image calls malloc & co. (and Swift code calls
// swift_allocObject) through its GOT; cap_alloc_start points those entries
// at the wrappers below and cap_alloc_stop writes the original values back
// (heaptrack's and bytehound's approach for attaching to a running process).
// Entries inside PT_GNU_RELRO are read-only after start-up; they are made
// writable for the one store and read-only again.
//
// Not the runtime's _swift_allocObject hook: replacing it moves the Swift
// runtime onto its swizzled retain/release path, which crashed a plain
// `print("…", n)` in _swift_retain_adapterImpl on this toolchain.
//
// Sampling is by bytes, like Go's MemProfileRate: each thread counts down an
// exponentially distributed number of bytes (mean = the session's rate); the
// allocation that crosses zero is recorded with its size, stack and, for
// swift_allocObject, the type metadata. An allocation of s bytes is thus
// sampled with probability 1 - exp(-s / rate), which the Swift side divides
// out to estimate objects and bytes.
//
// The wrappers' fast path is a call to the real function, two thread-local
// reads and a subtraction. The recording path takes no locks and allocates
// nothing (it runs inside malloc): a slot of the lock-free ring, the CFI or
// frame-pointer walk of the signal handler, and a few atomics. A thread-local
// `busy` flag keeps nested calls (swift_allocObject -> malloc) from being
// counted twice and makes recursion impossible.
#define _GNU_SOURCE
#include "cap_session.h"
#include "cap_stack.h"
#include "unwind_cfi.h"
#include "unwind_fp.h"

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

// MARK: - State

static cap_session cap_alloc_session;
static _Atomic int g_alloc_owned;            // between start and release
static _Atomic int g_alloc_installed;        // entries redirected
static _Atomic uint64_t g_alloc_mean;        // bytes
static _Atomic uint32_t g_alloc_generation;  // bumped by each start: threads redraw
static void *g_alloc_memory;
static size_t g_alloc_bytes;
static pthread_mutex_t g_patch_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t g_patched_images;
static uint64_t g_patched_slots;  // entries redirected by the last install (kept after stop)

typedef struct cap_alloc_thread {
  int64_t countdown;    // bytes until the next sample
  uint64_t random;      // xorshift state
  uint64_t calls;       // wrapper calls (tests)
  uint32_t generation;  // session the countdown was drawn for
  uint32_t busy;        // inside a wrapper's real call or recording
  uint32_t ignored;     // a profiler thread
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

static malloc_fn real_malloc;
static calloc_fn real_calloc;
static realloc_fn real_realloc;
static posix_memalign_fn real_posix_memalign;
static aligned_alloc_fn real_aligned_alloc;
static aligned_alloc_fn real_memalign;
static swift_alloc_object_fn real_swift_alloc_object;
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
  double mean = (double)atomic_load_explicit(&g_alloc_mean, memory_order_relaxed);
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
static void cap_alloc_record(cap_alloc_thread *t, size_t size, uint64_t type, uint64_t frame) {
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
    uint32_t depth;
    if (cap_alloc_stack_bounds(t, s, sp, &low, &high)) {
      int truncated = 0;
#if defined(__x86_64__)
      if (s->unwind_image_count > 0) {
        int complete = 0;
        depth = cap_unwind_cfi(s->unwind_images, s->unwind_image_count, pc, sp, fp, low, high,
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
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    slot->header.timestamp_ns = (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
    slot->header.weight = size;
    if (t->tid == 0) t->tid = (int32_t)syscall(SYS_gettid);
    slot->header.tid = t->tid;
    slot->header.depth = (uint16_t)depth;
    slot->header.flags = flags;
    slot->header.object_type = type;
    cap_slot_commit(slot);
    atomic_fetch_add_explicit(&s->samples_written, 1, memory_order_relaxed);
  }
  atomic_fetch_sub(&s->handlers_running, 1);
}

/// The countdown crossed zero (or belongs to an older session).
__attribute__((noinline)) static void cap_alloc_slow(cap_alloc_thread *t, size_t size, uint64_t type,
                                                     uint64_t frame) {
  if (t->ignored) {
    t->countdown = INT64_MAX;
    return;
  }
  uint32_t generation = atomic_load_explicit(&g_alloc_generation, memory_order_acquire);
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
  cap_alloc_record(t, size, type, frame);
  t->busy = 0;
}

/// Counts `size` against the thread's countdown; records on crossing zero.
#define CAP_ALLOC_ACCOUNT(size, type)                                                         \
  do {                                                                                        \
    cap_alloc_thread *t = &t_alloc;                                                           \
    t->calls++;                                                                               \
    if (t->busy) break;                                                                       \
    t->countdown -= (int64_t)(size);                                                          \
    if (__builtin_expect(t->countdown > 0, 1)) break;                                         \
    cap_alloc_slow(t, (size), (type), (uint64_t)(uintptr_t)__builtin_frame_address(0));       \
  } while (0)

static void *cap_hook_malloc(size_t size) {
  void *result = CAP_REAL(real_malloc)(size);
  if (result != 0) CAP_ALLOC_ACCOUNT(size, 0);
  return result;
}

static void *cap_hook_calloc(size_t count, size_t size) {
  void *result = CAP_REAL(real_calloc)(count, size);
  if (result != 0) CAP_ALLOC_ACCOUNT(count * size, 0);
  return result;
}

static void *cap_hook_realloc(void *pointer, size_t size) {
  void *result = CAP_REAL(real_realloc)(pointer, size);
  if (result != 0 && size != 0) CAP_ALLOC_ACCOUNT(size, 0);
  return result;
}

static int cap_hook_posix_memalign(void **out, size_t alignment, size_t size) {
  int result = CAP_REAL(real_posix_memalign)(out, alignment, size);
  if (result == 0) CAP_ALLOC_ACCOUNT(size, 0);
  return result;
}

static void *cap_hook_aligned_alloc(size_t alignment, size_t size) {
  void *result = CAP_REAL(real_aligned_alloc)(alignment, size);
  if (result != 0) CAP_ALLOC_ACCOUNT(size, 0);
  return result;
}

static void *cap_hook_memalign(size_t alignment, size_t size) {
  void *result = CAP_REAL(real_memalign)(alignment, size);
  if (result != 0) CAP_ALLOC_ACCOUNT(size, 0);
  return result;
}

/// Swift class instances, array/string/dictionary storage, closure contexts
/// allocated by compiled Swift code. The runtime's own malloc call inside is
/// not counted again (busy).
static void *cap_hook_swift_alloc_object(const void *metadata, size_t size, size_t alignment_mask) {
  cap_alloc_thread *t = &t_alloc;
  uint32_t was_busy = t->busy;
  t->busy = 1;
  void *result = CAP_REAL(real_swift_alloc_object)(metadata, size, alignment_mask);
  t->busy = was_busy;
  CAP_ALLOC_ACCOUNT(size, (uint64_t)(uintptr_t)metadata);
  return result;
}

// MARK: - GOT patching (off the allocation path; under g_patch_lock)

typedef struct cap_hook {
  const char *name;
  void *hook;
  void **real;
} cap_hook;

static cap_hook g_hooks[] = {
    {"malloc", (void *)cap_hook_malloc, (void **)&real_malloc},
    {"calloc", (void *)cap_hook_calloc, (void **)&real_calloc},
    {"realloc", (void *)cap_hook_realloc, (void **)&real_realloc},
    {"posix_memalign", (void *)cap_hook_posix_memalign, (void **)&real_posix_memalign},
    {"aligned_alloc", (void *)cap_hook_aligned_alloc, (void **)&real_aligned_alloc},
    {"memalign", (void *)cap_hook_memalign, (void **)&real_memalign},
    {"swift_allocObject", (void *)cap_hook_swift_alloc_object, (void **)&real_swift_alloc_object},
};
#define CAP_HOOK_COUNT (sizeof g_hooks / sizeof g_hooks[0])

typedef struct cap_patch {
  uint64_t *slot;
  uint64_t original;
} cap_patch;

#define CAP_MAX_PATCHES 8192
static cap_patch *g_patches;  // in g_alloc_memory
static uint32_t g_patch_count;

enum { CAP_WALK_PATCH = 1, CAP_WALK_RESTORE = 2, CAP_WALK_COUNT = 3 };

typedef struct cap_walk {
  int action;
  uint64_t changed;        // entries written (patch, restore) or found (count)
  uint64_t images;         // images with at least one entry changed
  int error;
  uint64_t page_size;      // read before the walk: sysconf is not called under the loader lock
} cap_walk;

static cap_walk cap_walk_new(int action) {
  cap_walk walk = {action, 0, 0, 0, (uint64_t)sysconf(_SC_PAGESIZE)};
  return walk;
}

// The walk runs under the loader's lock (dl_iterate_phdr): no instrumented
// code and no intercepted libc calls there (see cap_sanitizer.h), hence these
// instead of strcmp/strncmp and a raw mprotect system call.
CAP_NO_INSTRUMENT static int cap_text_equal(const char *a, const char *b) {
  while (*a != 0 && *a == *b) {
    a++;
    b++;
  }
  return *a == *b;
}

CAP_NO_INSTRUMENT static int cap_text_starts(const char *text, const char *prefix) {
  while (*prefix != 0) {
    if (*text++ != *prefix++) return 0;
  }
  return 1;
}

CAP_NO_INSTRUMENT static int cap_protect(uint64_t page, uint64_t size, int protection) {
  return syscall(SYS_mprotect, (void *)(uintptr_t)page, (size_t)size, protection) == 0 ? 0 : -errno;
}

#if defined(__x86_64__)
#define CAP_R_JUMP_SLOT R_X86_64_JUMP_SLOT
#define CAP_R_GLOB_DAT R_X86_64_GLOB_DAT
#elif defined(__aarch64__)
#define CAP_R_JUMP_SLOT R_AARCH64_JUMP_SLOT
#define CAP_R_GLOB_DAT R_AARCH64_GLOB_DAT
#endif

CAP_NO_INSTRUMENT static int cap_skip_image(const char *name) {
  if (name == 0 || name[0] == 0) return 0;  // the executable
  const char *base = name;
  for (const char *c = name; *c != 0; c++) {
    if (*c == '/') base = c + 1;
  }
  // The dynamic linker and libc: their internal allocations are theirs; the
  // vDSO has no GOT.
  return cap_text_starts(base, "ld-linux") || cap_text_starts(base, "ld-musl") ||
         cap_text_starts(base, "libc.so") || cap_text_starts(base, "linux-vdso") ||
         cap_text_starts(base, "linux-gate");
}

CAP_NO_INSTRUMENT static int cap_store_slot(uint64_t *slot, uint64_t value, uint64_t relro_start,
                                            uint64_t relro_end, uint64_t page_size) {
  uint64_t address = (uint64_t)(uintptr_t)slot;
  uint64_t page = address & ~(page_size - 1);
  int protect = address >= relro_start && address + 8 <= relro_end;
  if (protect) {
    int error = cap_protect(page, page_size, PROT_READ | PROT_WRITE);
    if (error != 0) return error;
  }
  __atomic_store_n(slot, value, __ATOMIC_SEQ_CST);
  if (protect) cap_protect(page, page_size, PROT_READ);
  return 0;
}

CAP_NO_INSTRUMENT static void cap_walk_relocations(cap_walk *walk, uint64_t bias, const ElfW(Rela) *relocations, uint64_t bytes,
                                 const ElfW(Sym) *symbols, const char *strings, uint64_t string_bytes,
                                 uint64_t relro_start, uint64_t relro_end, int *image_changed) {
  if (relocations == 0 || symbols == 0 || strings == 0) return;
  uint64_t count = bytes / sizeof(ElfW(Rela));
  for (uint64_t i = 0; i < count; i++) {
    uint64_t type = ELF64_R_TYPE(relocations[i].r_info);
    if (type != CAP_R_JUMP_SLOT && type != CAP_R_GLOB_DAT) continue;
    uint64_t symbol = ELF64_R_SYM(relocations[i].r_info);
    if (symbol == 0) continue;
    uint64_t name_offset = symbols[symbol].st_name;
    if (string_bytes != 0 && name_offset >= string_bytes) continue;
    const char *name = strings + name_offset;
    for (size_t h = 0; h < CAP_HOOK_COUNT; h++) {
      if (!cap_text_equal(name, g_hooks[h].name)) continue;
      uint64_t *slot = (uint64_t *)(uintptr_t)(bias + relocations[i].r_offset);
      uint64_t current = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
      uint64_t hook = (uint64_t)(uintptr_t)g_hooks[h].hook;
      if (walk->action == CAP_WALK_COUNT) {
        if (current == hook) walk->changed++;
      } else if (walk->action == CAP_WALK_PATCH) {
        if (current == hook || *g_hooks[h].real == 0) break;
        if (g_patch_count == CAP_MAX_PATCHES) {
          walk->error = -ENOSPC;
          break;
        }
        int stored = cap_store_slot(slot, hook, relro_start, relro_end, walk->page_size);
        if (stored != 0) {
          walk->error = stored;
          break;
        }
        g_patches[g_patch_count].slot = slot;
        g_patches[g_patch_count].original = current;
        g_patch_count++;
        walk->changed++;
        *image_changed = 1;
      } else if (walk->action == CAP_WALK_RESTORE) {
        if (current != hook) break;
        uint64_t original = (uint64_t)(uintptr_t)*g_hooks[h].real;
        for (uint32_t p = 0; p < g_patch_count; p++) {
          if (g_patches[p].slot == slot) {
            original = g_patches[p].original;
            break;
          }
        }
        if (cap_store_slot(slot, original, relro_start, relro_end, walk->page_size) == 0) {
          walk->changed++;
          *image_changed = 1;
        }
      }
      break;
    }
  }
}

CAP_NO_INSTRUMENT static int cap_walk_image(struct dl_phdr_info *info, size_t size, void *context) {
  (void)size;
  cap_walk *walk = (cap_walk *)context;
  if (cap_skip_image(info->dlpi_name)) return 0;
  uint64_t bias = info->dlpi_addr;
  const ElfW(Dyn) *dynamic = 0;
  uint64_t relro_start = 0, relro_end = 0;
  uint64_t page_size = walk->page_size;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *header = &info->dlpi_phdr[i];
    if (header->p_type == PT_DYNAMIC) dynamic = (const ElfW(Dyn) *)(uintptr_t)(bias + header->p_vaddr);
    if (header->p_type == PT_GNU_RELRO) {
      // The loader protects whole pages: start rounded down, end rounded down.
      relro_start = (bias + header->p_vaddr) & ~((uint64_t)page_size - 1);
      relro_end = (bias + header->p_vaddr + header->p_memsz) & ~((uint64_t)page_size - 1);
    }
  }
  if (dynamic == 0) return 0;
  uint64_t symtab = 0, strtab = 0, strsz = 0, rela = 0, relasz = 0, jmprel = 0, pltrelsz = 0, pltrel = DT_RELA;
  for (const ElfW(Dyn) *entry = dynamic; entry->d_tag != DT_NULL; entry++) {
    switch (entry->d_tag) {
    case DT_SYMTAB: symtab = entry->d_un.d_ptr; break;
    case DT_STRTAB: strtab = entry->d_un.d_ptr; break;
    case DT_STRSZ: strsz = entry->d_un.d_val; break;
    case DT_RELA: rela = entry->d_un.d_ptr; break;
    case DT_RELASZ: relasz = entry->d_un.d_val; break;
    case DT_JMPREL: jmprel = entry->d_un.d_ptr; break;
    case DT_PLTRELSZ: pltrelsz = entry->d_un.d_val; break;
    case DT_PLTREL: pltrel = entry->d_un.d_val; break;
    default: break;
    }
  }
  // glibc stores these relocated in place; other loaders may not.
#define CAP_ADJUST(value) ((value) != 0 && (value) < bias ? (value) + bias : (value))
  const ElfW(Sym) *symbols = (const ElfW(Sym) *)(uintptr_t)CAP_ADJUST(symtab);
  const char *strings = (const char *)(uintptr_t)CAP_ADJUST(strtab);
  int changed = 0;
  cap_walk_relocations(walk, bias, (const ElfW(Rela) *)(uintptr_t)CAP_ADJUST(rela), relasz, symbols, strings,
                       strsz, relro_start, relro_end, &changed);
  if (pltrel == DT_RELA) {
    cap_walk_relocations(walk, bias, (const ElfW(Rela) *)(uintptr_t)CAP_ADJUST(jmprel), pltrelsz, symbols,
                         strings, strsz, relro_start, relro_end, &changed);
  }
#undef CAP_ADJUST
  if (changed) walk->images++;
  return 0;
}

static void cap_resolve_real_functions(void) {
  for (size_t h = 0; h < CAP_HOOK_COUNT; h++) {
    if (__atomic_load_n(g_hooks[h].real, __ATOMIC_ACQUIRE) == 0) {
      __atomic_store_n(g_hooks[h].real, dlsym(RTLD_DEFAULT, g_hooks[h].name), __ATOMIC_RELEASE);
    }
  }
}

static void cap_restore_all(void) {
  cap_walk walk = cap_walk_new(CAP_WALK_RESTORE);
  dl_iterate_phdr(cap_walk_image, &walk);
  g_patch_count = 0;
}

static void cap_alloc_atfork_child(void) {
  // The child has no drain thread: put its entries back, stop recording.
  if (atomic_load(&g_alloc_installed)) {
    cap_restore_all();
    atomic_store(&g_alloc_installed, 0);
  }
  atomic_store(&cap_alloc_session.active, 0);
  t_alloc.tid = 0;  // the child's only thread has a new id
}

// MARK: - Lifecycle

static void cap_alloc_set_message(char *message, size_t len, const char *text, int error) {
  if (message == 0 || len == 0) return;
  if (error != 0) {
    snprintf(message, len, "%s: %s", text, strerror(error));
  } else {
    snprintf(message, len, "%s", text);
  }
}

static void cap_alloc_unmap(void) {
  cap_session *s = &cap_alloc_session;
  if (g_alloc_memory != 0) munmap(g_alloc_memory, g_alloc_bytes);
  g_alloc_memory = 0;
  g_patches = 0;
  s->range_sets = 0;
  s->slots = 0;
  s->unwind_images = 0;
  s->unwind_image_count = 0;
}

int cap_alloc_start(const cap_alloc_config *config, char *message, size_t message_len) {
  int expected = 0;
  if (!atomic_compare_exchange_strong(&g_alloc_owned, &expected, 1)) {
    cap_alloc_set_message(message, message_len, "an allocation session is already running", 0);
    return -EBUSY;
  }
  if (config->mean_bytes == 0 || config->buffer_slots < 16) {
    atomic_store(&g_alloc_owned, 0);
    cap_alloc_set_message(message, message_len, "invalid allocation sampler configuration", 0);
    return -EINVAL;
  }
  static _Atomic int fork_registered;
  if (!atomic_exchange(&fork_registered, 1)) pthread_atfork(0, 0, cap_alloc_atfork_child);

  cap_session *s = &cap_alloc_session;
  size_t range_bytes = 2 * sizeof(cap_range_set);
  size_t patch_bytes = CAP_MAX_PATCHES * sizeof(cap_patch);
  size_t slot_bytes = (size_t)config->buffer_slots * sizeof(cap_slot);
  g_alloc_bytes = range_bytes + patch_bytes + slot_bytes;
  void *memory = mmap(0, g_alloc_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (memory == MAP_FAILED) {
    int error = errno;
    atomic_store(&g_alloc_owned, 0);
    cap_alloc_set_message(message, message_len, "mmap of the allocation sample buffer failed", error);
    return -error;
  }
  g_alloc_memory = memory;
  s->range_sets = (cap_range_set *)memory;
  g_patches = (cap_patch *)((char *)memory + range_bytes);
  g_patch_count = 0;
  s->slots = (cap_slot *)((char *)memory + range_bytes + patch_bytes);
  s->slot_count = config->buffer_slots;
  atomic_store(&s->write_cursor, 0);
  s->read_cursor = 0;
  atomic_store(&s->current_ranges, 0);
  atomic_store(&s->ranges_stale, 0);
  s->unwind_images = config->unwind_images;
  s->unwind_image_count = config->unwind_images ? config->unwind_image_count : 0;
  atomic_store(&s->samples_written, 0);
  atomic_store(&s->samples_dropped, 0);
  atomic_store(&s->complete_samples, 0);
  cap_ranges_refresh(s);

  cap_resolve_real_functions();
  if (real_malloc == 0 || real_calloc == 0 || real_realloc == 0) {
    cap_alloc_unmap();
    atomic_store(&g_alloc_owned, 0);
    cap_alloc_set_message(message, message_len, "cannot find malloc, calloc and realloc with dlsym", 0);
    return -ENOENT;
  }
  atomic_store(&g_alloc_mean, config->mean_bytes);
  uint32_t generation = atomic_load(&g_alloc_generation) + 1;
  if (generation == 0) generation = 1;
  atomic_store(&g_alloc_generation, generation);
  atomic_store(&s->active, 1);

  pthread_mutex_lock(&g_patch_lock);
  cap_walk walk = cap_walk_new(CAP_WALK_PATCH);
  dl_iterate_phdr(cap_walk_image, &walk);
  g_patched_images = walk.images;
  g_patched_slots = walk.changed;
  atomic_store(&g_alloc_installed, 1);
  if (walk.error != 0) {
    cap_restore_all();
    atomic_store(&g_alloc_installed, 0);
    pthread_mutex_unlock(&g_patch_lock);
    cap_alloc_stop();
    cap_alloc_release();
    cap_alloc_set_message(message, message_len, "redirecting the allocation functions failed", -walk.error);
    return walk.error;
  }
  pthread_mutex_unlock(&g_patch_lock);
  return 0;
}

int cap_alloc_patch_new_images(void) {
  if (!atomic_load(&g_alloc_installed)) return 0;
  pthread_mutex_lock(&g_patch_lock);
  cap_walk walk = cap_walk_new(CAP_WALK_PATCH);
  if (atomic_load(&g_alloc_installed)) {
    dl_iterate_phdr(cap_walk_image, &walk);
    g_patched_images += walk.images;
    g_patched_slots += walk.changed;
  }
  pthread_mutex_unlock(&g_patch_lock);
  return (int)walk.changed;
}

void cap_alloc_stop(void) {
  cap_session *s = &cap_alloc_session;
  if (!atomic_load(&g_alloc_owned)) return;
  pthread_mutex_lock(&g_patch_lock);
  if (atomic_load(&g_alloc_installed)) {
    cap_restore_all();
    atomic_store(&g_alloc_installed, 0);
  }
  pthread_mutex_unlock(&g_patch_lock);
  // Same protocol as the signal handler: a wrapper counts itself, then reads
  // `active`; once it is 0 and the count drained, nobody touches the ring.
  atomic_store(&s->active, 0);
  while (atomic_load(&s->handlers_running) != 0) {
    struct timespec pause = {0, 100000};
    nanosleep(&pause, 0);
  }
}

void cap_alloc_release(void) {
  if (!atomic_load(&g_alloc_owned)) return;
  cap_alloc_stop();
  cap_alloc_unmap();
  atomic_store(&g_alloc_owned, 0);
}

size_t cap_alloc_drain(void *out, size_t capacity, int full_scan) {
  cap_session *s = &cap_alloc_session;
  if (!atomic_load(&g_alloc_owned) || s->slots == 0) return 0;
  if (atomic_load(&s->active) && atomic_load(&s->ranges_stale)) {
    // A wrapper met a stack it did not know (a thread started since the last
    // snapshot). Reading /proc/self/maps allocates: not sampled.
    int was_ignored = cap_alloc_set_thread_ignored(1);
    cap_ranges_refresh(s);
    cap_alloc_set_thread_ignored(was_ignored);
  }
  return cap_slots_drain(s, out, capacity, full_scan);
}

void cap_alloc_stats_get(cap_alloc_stats *out) {
  cap_session *s = &cap_alloc_session;
  memset(out, 0, sizeof *out);
  out->samples_written = atomic_load(&s->samples_written);
  out->samples_dropped = atomic_load(&s->samples_dropped);
  out->complete_samples = atomic_load(&s->complete_samples);
  out->patched_slots = g_patched_slots;
  out->patched_images = g_patched_images;
  out->mean_bytes = atomic_load(&g_alloc_mean);
}

int cap_alloc_redirected_entries(void) {
  pthread_mutex_lock(&g_patch_lock);
  cap_resolve_real_functions();
  cap_walk walk = cap_walk_new(CAP_WALK_COUNT);
  dl_iterate_phdr(cap_walk_image, &walk);
  pthread_mutex_unlock(&g_patch_lock);
  return (int)walk.changed;
}

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
