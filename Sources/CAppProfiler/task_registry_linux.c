// The task registry: every live Swift task, known from its creation
// (docs/tasks.md).
//
// The concurrency runtime has no task-created/destroyed hook on Linux. It
// allocates a task with `malloc` inside `swift_task_create_common` and frees
// it with `free` (destroyTask's tail call), both through the GOT of
// libswift_Concurrency.so. At load time (a constructor, before `main` runs
// any Swift code) those two GOT entries are pointed at the wrappers below:
// a `malloc` whose return address lies in `swift_task_create_common` adds
// the pointer, a `free` of a registered pointer removes it. Every other call
// goes straight through. Async-let children come from their parent's task
// allocator instead; the dump reaches them through the parent's status
// records.
//
// The table is an open-addressing hash set in 64 shards, each under a spin
// lock (held for one probe sequence or a copy), in memory of its own (mmap):
// a hook never allocates. A filter bit per hash lets most frees of other
// memory skip the locks. When a shard cannot grow, tasks are counted as
// unrecorded.
// Allocation profiles redirect malloc & co. in every image; for the two
// entries held here they redirect this file's `next` pointers instead
// (got_patch_linux.c), so both see every task.
//
// Off: APP_PROFILER_TASKS=0 (read once, in the constructor).
#define _GNU_SOURCE
#include "cap_platform.h"
#if CAP_HAVE_SAMPLER
#include "cap_sanitizer.h"
#include "include/CAppProfiler.h"

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

typedef void *(*cap_malloc_fn)(size_t);
typedef void (*cap_free_fn)(void *);

/// Where the wrappers go on: the GOT's original values, or the allocation
/// wrappers while an allocation profile runs (got_patch_linux.c).
uint64_t cap_task_next_malloc;
uint64_t cap_task_next_free;

static uint64_t g_create_start, g_create_end;  // swift_task_create_common
static int g_state;  // cap_task_registry_state
static uint64_t g_installed_ns;
static char g_reason[160];

/// The table is split in shards by hash, each with its own lock, so that
/// threads creating tasks at once rarely meet.
#define CAP_TASK_SHARDS 64u
#define CAP_TASK_INITIAL_CAPACITY 256u
#define CAP_TASK_MAX_CAPACITY (1u << 18)  // per shard: 8 Mi live tasks in all at half load

typedef struct __attribute__((aligned(64))) cap_task_shard {
  int lock;  // a spinlock: held for one probe sequence, never across a call out
  cap_task_entry *table;  // capacity entries; task 0 = empty
  uint64_t capacity, live, seen, unrecorded;
} cap_task_shard;

static cap_task_shard g_shards[CAP_TASK_SHARDS];

/// One bit per hash value: set before a task is added, never cleared. A
/// `free` whose bit is clear cannot be of a task (the bit was set before the
/// pointer left the malloc wrapper, which happens before any free of it), so
/// most frees of the runtime's other memory skip the shard lock. 128 KiB,
/// resident only where touched.
#define CAP_TASK_FILTER_BITS (1u << 20)
static uint64_t g_maybe_task[CAP_TASK_FILTER_BITS / 64];

static inline uint64_t cap_task_filter_bit(uint64_t hash) { return (hash >> 40) & (CAP_TASK_FILTER_BITS - 1); }

static inline void cap_task_pause(void) {
#if defined(__x86_64__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ volatile("yield");
#endif
}

static inline void cap_task_lock(cap_task_shard *shard) {
  for (uint32_t spins = 0; __atomic_exchange_n(&shard->lock, 1, __ATOMIC_ACQUIRE) != 0;) {
    while (__atomic_load_n(&shard->lock, __ATOMIC_RELAXED) != 0) {
      // The holder was preempted: let it run.
      if (++spins > 64) sched_yield();
      else cap_task_pause();
    }
  }
}

static inline void cap_task_unlock(cap_task_shard *shard) { __atomic_store_n(&shard->lock, 0, __ATOMIC_RELEASE); }

static uint64_t cap_task_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint64_t cap_task_hash(uint64_t task) {
  uint64_t x = task >> 4;  // tasks are 16-byte aligned
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return x;
}

static inline cap_task_shard *cap_task_shard_of(uint64_t hash) { return &g_shards[hash & (CAP_TASK_SHARDS - 1)]; }
static inline uint64_t cap_task_slot(uint64_t hash, uint64_t mask) { return (hash >> 6) & mask; }

/// Inserts into `table` (no duplicates: a pointer is malloc'ed once until freed).
static void cap_task_place(cap_task_entry *table, uint64_t capacity, cap_task_entry entry) {
  uint64_t mask = capacity - 1;
  for (uint64_t i = cap_task_slot(cap_task_hash(entry.task), mask);; i = (i + 1) & mask) {
    if (table[i].task == 0) {
      table[i] = entry;
      return;
    }
  }
}

/// Doubles a shard's table (under its lock). 0 when memory could not be had.
static int cap_task_grow(cap_task_shard *shard) {
  uint64_t capacity = shard->capacity == 0 ? CAP_TASK_INITIAL_CAPACITY : shard->capacity * 2;
  if (capacity > CAP_TASK_MAX_CAPACITY) return 0;
  void *memory = mmap(0, capacity * sizeof(cap_task_entry), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) return 0;
  cap_task_entry *table = (cap_task_entry *)memory;
  for (uint64_t i = 0; i < shard->capacity; i++) {
    if (shard->table[i].task != 0) cap_task_place(table, capacity, shard->table[i]);
  }
  if (shard->table != 0) munmap(shard->table, shard->capacity * sizeof(cap_task_entry));
  shard->table = table;
  shard->capacity = capacity;
  return 1;
}

static void cap_task_add(uint64_t task) {
  cap_task_entry entry = {task, cap_task_now()};
  uint64_t hash = cap_task_hash(task), bit = cap_task_filter_bit(hash);
  uint64_t *word = &g_maybe_task[bit / 64], mask = 1ull << (bit % 64);
  if ((__atomic_load_n(word, __ATOMIC_RELAXED) & mask) == 0) __atomic_fetch_or(word, mask, __ATOMIC_RELAXED);
  cap_task_shard *shard = cap_task_shard_of(hash);
  cap_task_lock(shard);
  shard->seen++;
  if ((shard->live + 1) * 2 > shard->capacity && !cap_task_grow(shard)) {
    shard->unrecorded++;
  } else {
    cap_task_place(shard->table, shard->capacity, entry);
    shard->live++;
  }
  cap_task_unlock(shard);
}

/// Removes `task` if registered (linear probing with backward-shift
/// deletion: no tombstones, so churn never fills the table).
static void cap_task_remove(uint64_t task) {
  uint64_t hash = cap_task_hash(task), bit = cap_task_filter_bit(hash);
  if ((__atomic_load_n(&g_maybe_task[bit / 64], __ATOMIC_RELAXED) & (1ull << (bit % 64))) == 0) return;
  cap_task_shard *shard = cap_task_shard_of(hash);
  cap_task_lock(shard);
  if (shard->live != 0) {
    cap_task_entry *table = shard->table;
    uint64_t mask = shard->capacity - 1;
    uint64_t i = cap_task_slot(hash, mask);
    while (table[i].task != 0 && table[i].task != task) i = (i + 1) & mask;
    if (table[i].task == task) {
      shard->live--;
      uint64_t hole = i;
      for (uint64_t j = (i + 1) & mask; table[j].task != 0; j = (j + 1) & mask) {
        uint64_t home = cap_task_slot(cap_task_hash(table[j].task), mask);
        // Move j into the hole unless its home lies cyclically in (hole, j].
        int stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!stays) {
          table[hole] = table[j];
          hole = j;
        }
      }
      table[hole].task = 0;
      table[hole].created_ns = 0;
    }
  }
  cap_task_unlock(shard);
}

static void *cap_task_malloc(size_t size) {
  void *result = ((cap_malloc_fn)(uintptr_t)__atomic_load_n(&cap_task_next_malloc, __ATOMIC_ACQUIRE))(size);
  uint64_t caller = (uint64_t)(uintptr_t)__builtin_return_address(0);
  if (result != 0 && caller >= g_create_start && caller < g_create_end) cap_task_add((uint64_t)(uintptr_t)result);
  return result;
}

static void cap_task_free(void *pointer) {
  if (pointer != 0) cap_task_remove((uint64_t)(uintptr_t)pointer);
  ((cap_free_fn)(uintptr_t)__atomic_load_n(&cap_task_next_free, __ATOMIC_ACQUIRE))(pointer);
}

// Called by the GOT walk under the loader's lock: no intercepted libc call
// here (cap_sanitizer.h). The wrappers' addresses identify their entries.
CAP_NO_INSTRUMENT uint64_t *cap_task_chain_slot(const char *name, uint64_t current) {
  (void)name;
  if (current == 0) return 0;
  if (current == (uint64_t)(uintptr_t)cap_task_malloc) return &cap_task_next_malloc;
  if (current == (uint64_t)(uintptr_t)cap_task_free) return &cap_task_next_free;
  return 0;
}

// --- installation ---------------------------------------------------------

typedef struct cap_task_find {
  uint64_t base;  // load address of libswift_Concurrency.so
  uint64_t page;  // read before the walk: sysconf is not called under the loader lock
  uint64_t *malloc_slot, *free_slot;
  uint64_t relro_start, relro_end;
} cap_task_find;

CAP_NO_INSTRUMENT static int cap_task_name_is(const char *name, const char *wanted) {
  while (*wanted != 0 && *name == *wanted) {
    name++;
    wanted++;
  }
  return *name == *wanted;
}

// Runs in dl_iterate_phdr's callback, under the loader's lock: no
// intercepted libc call (cap_sanitizer.h), hence cap_task_name_is.
CAP_NO_INSTRUMENT static int cap_task_find_slots(struct dl_phdr_info *info, size_t size, void *context) {
  (void)size;
  cap_task_find *find = (cap_task_find *)context;
  if (info->dlpi_addr != find->base) return 0;
  uint64_t bias = info->dlpi_addr, page = find->page;
  const ElfW(Dyn) *dynamic = 0;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *header = &info->dlpi_phdr[i];
    if (header->p_type == PT_DYNAMIC) dynamic = (const ElfW(Dyn) *)(uintptr_t)(bias + header->p_vaddr);
    if (header->p_type == PT_GNU_RELRO) {
      find->relro_start = (bias + header->p_vaddr) & ~(page - 1);
      find->relro_end = (bias + header->p_vaddr + header->p_memsz) & ~(page - 1);
    }
  }
  if (dynamic == 0) return 1;
  uint64_t symtab = 0, strtab = 0, jmprel = 0, pltrelsz = 0, rela = 0, relasz = 0;
  for (const ElfW(Dyn) *entry = dynamic; entry->d_tag != DT_NULL; entry++) {
    switch (entry->d_tag) {
    case DT_SYMTAB: symtab = entry->d_un.d_ptr; break;
    case DT_STRTAB: strtab = entry->d_un.d_ptr; break;
    case DT_JMPREL: jmprel = entry->d_un.d_ptr; break;
    case DT_PLTRELSZ: pltrelsz = entry->d_un.d_val; break;
    case DT_RELA: rela = entry->d_un.d_ptr; break;
    case DT_RELASZ: relasz = entry->d_un.d_val; break;
    default: break;
    }
  }
  // The loader has relocated these to addresses already (glibc); small
  // values are offsets still.
#define CAP_AT(x) ((x) < bias ? (x) + bias : (x))
  if (symtab == 0 || strtab == 0) return 1;
  const ElfW(Sym) *symbols = (const ElfW(Sym) *)(uintptr_t)CAP_AT(symtab);
  const char *strings = (const char *)(uintptr_t)CAP_AT(strtab);
  const ElfW(Rela) *tables[2] = {jmprel ? (const ElfW(Rela) *)(uintptr_t)CAP_AT(jmprel) : 0,
                                  rela ? (const ElfW(Rela) *)(uintptr_t)CAP_AT(rela) : 0};
  uint64_t sizes[2] = {pltrelsz, relasz};
#undef CAP_AT
  for (int t = 0; t < 2; t++) {
    if (tables[t] == 0) continue;
    for (uint64_t i = 0; i < sizes[t] / sizeof(ElfW(Rela)); i++) {
      uint64_t type = ELF64_R_TYPE(tables[t][i].r_info), symbol = ELF64_R_SYM(tables[t][i].r_info);
#if defined(__x86_64__)
      if (type != R_X86_64_JUMP_SLOT && type != R_X86_64_GLOB_DAT) continue;
#elif defined(__aarch64__)
      if (type != R_AARCH64_JUMP_SLOT && type != R_AARCH64_GLOB_DAT) continue;
#endif
      if (symbol == 0) continue;
      const char *name = strings + symbols[symbol].st_name;
      uint64_t *slot = (uint64_t *)(uintptr_t)(bias + tables[t][i].r_offset);
      if (cap_task_name_is(name, "malloc") && find->malloc_slot == 0) find->malloc_slot = slot;
      if (cap_task_name_is(name, "free") && find->free_slot == 0) find->free_slot = slot;
    }
  }
  return 1;
}

static int cap_task_store(uint64_t *slot, uint64_t value, const cap_task_find *find) {
  uint64_t page_size = (uint64_t)sysconf(_SC_PAGESIZE);
  uint64_t address = (uint64_t)(uintptr_t)slot, page = address & ~(page_size - 1);
  int protect = address >= find->relro_start && address + 8 <= find->relro_end;
  if (protect && mprotect((void *)(uintptr_t)page, page_size, PROT_READ | PROT_WRITE) != 0) return -errno;
  __atomic_store_n(slot, value, __ATOMIC_SEQ_CST);
  if (protect) mprotect((void *)(uintptr_t)page, page_size, PROT_READ);
  return 0;
}

static void cap_task_fail(int state, const char *reason) {
  g_state = state;
  size_t n = strlen(reason);
  if (n >= sizeof g_reason) n = sizeof g_reason - 1;
  memcpy(g_reason, reason, n);
  g_reason[n] = 0;
}

static void cap_task_atfork_prepare(void) {
  for (uint32_t i = 0; i < CAP_TASK_SHARDS; i++) cap_task_lock(&g_shards[i]);
}
static void cap_task_atfork_release(void) {
  for (uint32_t i = CAP_TASK_SHARDS; i > 0; i--) cap_task_unlock(&g_shards[i - 1]);
}
static pid_t g_pid;
static void cap_task_atfork_child(void) {
  __atomic_store_n(&g_pid, 0, __ATOMIC_RELAXED);
  cap_task_atfork_release();
}

void cap_task_registry_install(void) {
  static int once;
  if (__atomic_exchange_n(&once, 1, __ATOMIC_ACQ_REL)) return;
  const char *setting = getenv("APP_PROFILER_TASKS");
  if (setting != 0 && (strcmp(setting, "0") == 0 || strcmp(setting, "false") == 0 || strcmp(setting, "off") == 0)) {
    cap_task_fail(CAP_TASKS_OFF, "turned off by APP_PROFILER_TASKS=0");
    return;
  }
  void *create = dlsym(RTLD_DEFAULT, "swift_task_create_common");
  if (create == 0) {
    cap_task_fail(CAP_TASKS_UNSUPPORTED, "no Swift concurrency runtime in this process (swift_task_create_common)");
    return;
  }
  Dl_info info;
  const ElfW(Sym) *symbol = 0;
  if (dladdr1(create, &info, (void **)&symbol, RTLD_DL_SYMENT) == 0 || symbol == 0 || symbol->st_size == 0 ||
      info.dli_fname == 0) {
    cap_task_fail(CAP_TASKS_UNSUPPORTED, "swift_task_create_common has no symbol size");
    return;
  }
  if (strstr(info.dli_fname, "libswift_Concurrency.so") == 0) {
    cap_task_fail(CAP_TASKS_UNSUPPORTED,
                  "the concurrency runtime is linked statically (-static-stdlib); the task registry needs libswift_Concurrency.so");
    return;
  }
  g_create_start = (uint64_t)(uintptr_t)create;
  g_create_end = g_create_start + symbol->st_size;
  cap_task_find find = {(uint64_t)(uintptr_t)info.dli_fbase, (uint64_t)sysconf(_SC_PAGESIZE), 0, 0, 0, 0};
  dl_iterate_phdr(cap_task_find_slots, &find);
  if (find.malloc_slot == 0 || find.free_slot == 0) {
    cap_task_fail(CAP_TASKS_UNSUPPORTED, "libswift_Concurrency.so calls malloc and free not through its GOT");
    return;
  }
  int grown = 1;
  for (uint32_t i = 0; i < CAP_TASK_SHARDS && grown; i++) {
    grown = cap_task_grow(&g_shards[i]);
  }
  if (!grown) {
    cap_task_fail(CAP_TASKS_UNSUPPORTED, "no memory for the task table");
    return;
  }
  pthread_atfork(cap_task_atfork_prepare, cap_task_atfork_release, cap_task_atfork_child);
  // Where the loader binds them (an interposed allocator included). Not the
  // entries' values: a lazily bound entry holds its PLT stub, whose first
  // call would write the resolved address over the wrapper.
  void *real_malloc = dlsym(RTLD_DEFAULT, "malloc"), *real_free = dlsym(RTLD_DEFAULT, "free");
  if (real_malloc == 0 || real_free == 0) {
    cap_task_fail(CAP_TASKS_UNSUPPORTED, "cannot find malloc and free with dlsym");
    return;
  }
  cap_task_next_malloc = (uint64_t)(uintptr_t)real_malloc;
  cap_task_next_free = (uint64_t)(uintptr_t)real_free;
  // free first: a task created once malloc is redirected is always removed.
  if (cap_task_store(find.free_slot, (uint64_t)(uintptr_t)cap_task_free, &find) != 0 ||
      cap_task_store(find.malloc_slot, (uint64_t)(uintptr_t)cap_task_malloc, &find) != 0) {
    cap_task_store(find.free_slot, cap_task_next_free, &find);
    cap_task_fail(CAP_TASKS_UNSUPPORTED, "could not write libswift_Concurrency.so's GOT (mprotect refused)");
    return;
  }
  g_installed_ns = cap_task_now();
  __atomic_store_n(&g_state, CAP_TASKS_ON, __ATOMIC_RELEASE);
}

__attribute__((constructor)) static void cap_task_registry_constructor(void) { cap_task_registry_install(); }

void cap_task_registry_status(cap_task_registry_info *out) {
  memset(out, 0, sizeof *out);
  int state = __atomic_load_n(&g_state, __ATOMIC_ACQUIRE);
  out->state = state;
  if (state == CAP_TASKS_ON) {
    for (uint32_t i = 0; i < CAP_TASK_SHARDS; i++) {
      cap_task_shard *shard = &g_shards[i];
      cap_task_lock(shard);
      out->live += shard->live;
      out->seen += shard->seen;
      out->unrecorded += shard->unrecorded;
      out->capacity += shard->capacity;
      cap_task_unlock(shard);
    }
  }
  out->table_bytes = out->capacity * sizeof(cap_task_entry);
  out->installed_ns = g_installed_ns;
  out->create_start = g_create_start;
  out->create_end = g_create_end;
  memcpy(out->reason, g_reason, sizeof g_reason);
}

uint64_t cap_task_registry_copy(cap_task_entry *out, uint64_t capacity) {
  if (__atomic_load_n(&g_state, __ATOMIC_ACQUIRE) != CAP_TASKS_ON) return 0;
  // Shard by shard: a task created meanwhile in a shard already copied is
  // missed by this copy, as it would be by a copy a moment earlier.
  uint64_t n = 0, live = 0;
  for (uint32_t s = 0; s < CAP_TASK_SHARDS; s++) {
    cap_task_shard *shard = &g_shards[s];
    cap_task_lock(shard);
    live += shard->live;
    for (uint64_t i = 0; i < shard->capacity && n < capacity; i++) {
      if (shard->table[i].task != 0) out[n++] = shard->table[i];
    }
    cap_task_unlock(shard);
  }
  return live > n ? live : n;
}

// --- reading memory that may have been freed meanwhile --------------------

static int g_read_mode;  // 0: process_vm_readv untried/working; 1: pipe
static int g_pipe[2] = {-1, -1};
static pthread_mutex_t g_pipe_lock = PTHREAD_MUTEX_INITIALIZER;
/// This process's id, read once (getpid is a system call), again after a fork.
static pid_t cap_own_pid(void) {
  pid_t pid = __atomic_load_n(&g_pid, __ATOMIC_RELAXED);
  if (pid == 0) {
    pid = getpid();
    __atomic_store_n(&g_pid, pid, __ATOMIC_RELAXED);
  }
  return pid;
}

/// Copies `bytes` at `address` into `buffer` if all of it is readable: a
/// system call reads it, so an unmapped page is an error, never a fault.
int cap_read_memory(uint64_t address, void *buffer, uint64_t bytes) {
  if (address < 4096 || bytes == 0) return 0;
  if (__atomic_load_n(&g_read_mode, __ATOMIC_RELAXED) == 0) {
    struct iovec local = {buffer, bytes}, remote = {(void *)(uintptr_t)address, bytes};
    ssize_t n = process_vm_readv(cap_own_pid(), &local, 1, &remote, 1, 0);
    if (n == (ssize_t)bytes) return 1;
    if (n >= 0 || errno == EFAULT || errno == ESRCH) return 0;
    // EPERM/ENOSYS (a seccomp filter): the pipe way from now on.
    __atomic_store_n(&g_read_mode, 1, __ATOMIC_RELAXED);
  }
  pthread_mutex_lock(&g_pipe_lock);
  if (g_pipe[0] < 0 && pipe2(g_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
    pthread_mutex_unlock(&g_pipe_lock);
    return 0;
  }
  int ok = 1;
  uint8_t *to = (uint8_t *)buffer;
  for (uint64_t done = 0; done < bytes && ok;) {
    uint64_t chunk = bytes - done > 4096 ? 4096 : bytes - done;
    ssize_t w = write(g_pipe[1], (const void *)(uintptr_t)(address + done), chunk);
    if (w <= 0) {
      ok = 0;
      break;
    }
    ssize_t r = read(g_pipe[0], to + done, (size_t)w);
    if (r != w) ok = 0;
    done += (uint64_t)w;
  }
  if (!ok) {  // drain what a partial write left
    uint8_t sink[256];
    while (read(g_pipe[0], sink, sizeof sink) > 0) {}
  }
  pthread_mutex_unlock(&g_pipe_lock);
  return ok;
}

/// Many regions at once: process_vm_readv takes up to IOV_MAX remote
/// regions and never splits one, so a read that stops early stops at a
/// region boundary; the region it stopped at is unreadable (a freed task
/// whose page went away), and the read goes on after it.
uint64_t cap_read_memory_many(const uint64_t *addresses, uint64_t count, uint64_t bytes, void *buffer, uint8_t *ok) {
  enum { batch = 512 };
  struct iovec remote[batch];
  uint64_t done = 0;
  memset(ok, 0, count);
  if (bytes == 0) return 0;
  for (uint64_t start = 0; start < count;) {
    if (__atomic_load_n(&g_read_mode, __ATOMIC_RELAXED) != 0) {
      // The pipe way: one region at a time.
      for (uint64_t i = start; i < count; i++) {
        ok[i] = (uint8_t)cap_read_memory(addresses[i], (uint8_t *)buffer + i * bytes, bytes);
        done += ok[i];
      }
      return done;
    }
    uint64_t n = 0;
    while (n < batch && start + n < count && addresses[start + n] >= 4096) {
      remote[n].iov_base = (void *)(uintptr_t)addresses[start + n];
      remote[n].iov_len = bytes;
      n++;
    }
    if (n == 0) {  // an address no read can reach: skip it
      start++;
      continue;
    }
    struct iovec local = {(uint8_t *)buffer + start * bytes, n * bytes};
    ssize_t got = process_vm_readv(cap_own_pid(), &local, 1, remote, (unsigned long)n, 0);
    if (got < 0 && errno != EFAULT && errno != ESRCH) {
      // EPERM/ENOSYS (a seccomp filter): cap_read_memory switches to the
      // pipe, and reads this region once more that way.
      ok[start] = (uint8_t)cap_read_memory(addresses[start], (uint8_t *)buffer + start * bytes, bytes);
      done += ok[start];
      start++;
      continue;
    }
    uint64_t whole = got > 0 ? (uint64_t)got / bytes : 0;
    for (uint64_t i = 0; i < whole; i++) ok[start + i] = 1;
    done += whole;
    // All read, or region `start + whole` stopped it: skip that one.
    start += whole < n ? whole + 1 : n;
  }
  return done;
}

#endif  // CAP_HAVE_SAMPLER
