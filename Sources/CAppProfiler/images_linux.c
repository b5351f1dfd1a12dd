// Loaded images for the Swift side: dl_iterate_phdr (symbolization, unwind
// tables), pinning an image while it is read (dlclose safety), the load
// counters; and the unwinders' entry points for tests and benchmarks. Not on
// the signal path.
#define _GNU_SOURCE
#include "cap_platform.h"
#if CAP_HAVE_SAMPLER
#include "include/CAppProfiler.h"
#include "cap_sanitizer.h"
#include "cap_session.h"
#include "cap_stack.h"
#include "unwind_cfi.h"
#include "unwind_fp.h"
#include <dlfcn.h>
#include <link.h>
#include <sys/auxv.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const cap_unwind_rule *cap_unwind_find_for_test(const cap_unwind_image *images, uint64_t image_count, uint64_t pc) {
  return cap_unwind_find(images, image_count, pc);
}

uint32_t cap_unwind_cfi_for_test(const cap_unwind_image *images, uint64_t image_count, uint64_t pc,
                                 uint64_t sp, uint64_t fp, uint64_t stack_low, uint64_t stack_high,
                                 uint64_t *frames, uint32_t max_frames, int *truncated, int *complete) {
  return cap_unwind_cfi(images, image_count, pc, sp, fp, 0, 0, stack_low, stack_high, frames, max_frames,
                        truncated, complete);
}

uint32_t cap_unwind_async_for_test(const cap_unwind_image *images, uint64_t image_count, uint64_t pc,
                                   uint64_t sp, uint64_t fp, uint64_t r14, uint64_t stack_low,
                                   uint64_t stack_high, const cap_code_range *memory, uint32_t memory_count,
                                   const cap_code_range *executors, uint32_t executor_count,
                                   uint64_t *frames, uint32_t max_frames, int *truncated, int *stitched,
                                   int *broken) {
  cap_async_walk walk = {0};
  walk.executors = executors;
  walk.executor_count = executor_count;
  walk.memory = memory;
  walk.memory_count = memory_count;
  walk.images = images;
  walk.image_count = image_count;
  int complete = 0;
  uint32_t depth = cap_unwind_cfi(images, image_count, pc, sp, fp, r14, &walk, stack_low, stack_high, frames,
                                  max_frames, truncated, &complete);
  *stitched = walk.stitched;
  *broken = walk.broken;
  return depth;
}

int cap_task_tls_locate(const void *function, uint64_t *module, uint64_t *offset) {
#if defined(__x86_64__)
  // swift_task_getCurrent (general-dynamic TLS, frame pointers kept):
  //   push %rbp; mov %rsp,%rbp            55 48 89 e5 (optional)
  //   lea  disp32(%rip),%rdi              (66) 48 8d 3d <disp32>
  //   call __tls_get_addr                 (66 66 48) e8 <rel32>
  //   mov  disp(%rax),%rax                48 8b 00 | 48 8b 40 <disp8> | 48 8b 80 <disp32>
  // The lea's target is the GOT's tls_index {module, offset} pair.
  if (function == 0) return 0;
  const uint8_t *code = (const uint8_t *)function;
  size_t at = 0;
  if (code[0] == 0x55 && code[1] == 0x48 && code[2] == 0x89 && code[3] == 0xe5) at = 4;
  if (code[at] == 0x66) at++;
  if (!(code[at] == 0x48 && code[at + 1] == 0x8d && code[at + 2] == 0x3d)) return 0;
  int32_t displacement;
  memcpy(&displacement, code + at + 3, 4);
  const uint8_t *after_lea = code + at + 7;
  const uint8_t *call = after_lea;
  if (call[0] == 0x66 && call[1] == 0x66 && call[2] == 0x48) call += 3;
  if (call[0] != 0xe8) return 0;
  const uint8_t *load = call + 5;
  uint64_t field;
  if (load[0] != 0x48 || load[1] != 0x8b) return 0;
  if (load[2] == 0x00) {
    field = 0;
  } else if (load[2] == 0x40) {
    field = load[3];
  } else if (load[2] == 0x80) {
    int32_t wide;
    memcpy(&wide, load + 3, 4);
    if (wide < 0) return 0;
    field = (uint64_t)wide;
  } else {
    return 0;
  }
  const uint64_t *index = (const uint64_t *)(uintptr_t)((uint64_t)(uintptr_t)after_lea + (int64_t)displacement);
  if (index[0] == 0 || ((index[1] + field) & 7) != 0) return 0;
  *module = index[0];
  *offset = index[1] + field;
  return 1;
#else
  (void)function; (void)module; (void)offset;
  return 0;
#endif
}

/// A private snapshot of the mappings for the test entry points and the
/// calibration (as a session holds one). Returns the set held, or NULL;
/// the caller frees `probe->range_sets` (NULL when the allocation failed).
static cap_range_set *cap_private_snapshot(cap_session *probe) {
  memset(probe, 0, sizeof *probe);
  cap_range_set *sets = calloc(2, sizeof(cap_range_set));
  if (sets == 0) return 0;
  probe->range_sets = sets;
  cap_ranges_refresh(probe);
  return cap_ranges_hold(probe);
}

uint64_t cap_current_task_for_test(uint64_t module, uint64_t offset) {
  cap_session probe;
  cap_range_set *set = cap_private_snapshot(&probe);
  uint64_t task = 0;
  if (set != 0) {
    cap_async_walk walk = {0};
    walk.memory = (const cap_code_range *)set->ranges;
    walk.memory_count = cap_ranges_count(set);
    task = cap_async_current_task(&walk, module, offset);
    cap_ranges_release(set);
  }
  free(probe.range_sets);
  return task;
}

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CAP_COPY_IMAGES 1
#endif
#endif

#if defined(CAP_COPY_IMAGES)
// Under ThreadSanitizer the Swift callback must not run under the loader's
// lock (see cap_sanitizer.h): copy what it reads, then call it outside.
enum { CAP_COPY_MAX_IMAGES = 1024, CAP_COPY_MAX_HEADERS = 32, CAP_COPY_NAME = 512 };

typedef struct cap_image_copy {
  uint64_t bias;
  char name[CAP_COPY_NAME];
  ElfW(Phdr) headers[CAP_COPY_MAX_HEADERS];
  uint16_t header_count;
} cap_image_copy;

typedef struct cap_copy_context {
  cap_image_copy *images;
  uint32_t count;
} cap_copy_context;

CAP_NO_INSTRUMENT static int cap_copy_one(struct dl_phdr_info *info, size_t size, void *data) {
  (void)size;
  cap_copy_context *copy = (cap_copy_context *)data;
  if (copy->count == CAP_COPY_MAX_IMAGES) return 1;
  cap_image_copy *image = &copy->images[copy->count++];
  image->bias = (uint64_t)info->dlpi_addr;
  uint32_t length = 0;
  if (info->dlpi_name != 0) {
    while (length + 1 < CAP_COPY_NAME && info->dlpi_name[length] != 0) {
      image->name[length] = info->dlpi_name[length];
      length++;
    }
  }
  image->name[length] = 0;
  uint16_t count = info->dlpi_phnum < CAP_COPY_MAX_HEADERS ? info->dlpi_phnum : CAP_COPY_MAX_HEADERS;
  for (uint16_t i = 0; i < count; i++) image->headers[i] = info->dlpi_phdr[i];
  image->header_count = count;
  return 0;
}

void cap_iterate_images(cap_image_callback callback, void *context) {
  cap_copy_context copy = {calloc(CAP_COPY_MAX_IMAGES, sizeof(cap_image_copy)), 0};
  if (copy.images == 0) return;
  dl_iterate_phdr(cap_copy_one, &copy);
  for (uint32_t i = 0; i < copy.count; i++) {
    cap_image_copy *image = &copy.images[i];
    cap_image_info info = {image->bias, image->name, image->headers, image->header_count};
    if (callback(&info, context) != 0) break;
  }
  free(copy.images);
}
#else
struct cap_iterate_context {
  cap_image_callback callback;
  void *context;
};

static int cap_iterate_one(struct dl_phdr_info *info, size_t size, void *data) {
  (void)size;
  struct cap_iterate_context *wrapped = (struct cap_iterate_context *)data;
  cap_image_info image = {(uint64_t)info->dlpi_addr, info->dlpi_name, info->dlpi_phdr,
                          (uint16_t)info->dlpi_phnum};
  return wrapped->callback(&image, wrapped->context);
}

void cap_iterate_images(cap_image_callback callback, void *context) {
  struct cap_iterate_context wrapped = {callback, context};
  dl_iterate_phdr(cap_iterate_one, &wrapped);
}
#endif

uint64_t cap_benchmark_unwind(const cap_unwind_image *images, uint64_t image_count, uint32_t iterations,
                              uint32_t *depth) {
#if defined(__x86_64__)
  pthread_attr_t attributes;
  void *stack = 0;
  size_t size = 0;
  if (pthread_getattr_np(pthread_self(), &attributes) != 0) return 0;
  pthread_attr_getstack(&attributes, &stack, &size);
  pthread_attr_destroy(&attributes);
  uint64_t high = (uint64_t)(uintptr_t)stack + size;
  uint64_t sp, fp, pc;
  __asm__ volatile("mov %%rsp, %0\n\tmov %%rbp, %1\n\tlea 0(%%rip), %2" : "=r"(sp), "=r"(fp), "=r"(pc));
  uint64_t frames[CAP_MAX_DEPTH];
  int truncated = 0, complete = 0;
  uint32_t found = 0;
  struct timespec start, end;
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (uint32_t i = 0; i < iterations; i++) {
    if (image_count > 0) {
      found = cap_unwind_cfi(images, image_count, pc, sp, fp, 0, 0, sp, high, frames, CAP_MAX_DEPTH,
                             &truncated, &complete);
    } else {
      found = cap_unwind_fp(pc, fp, sp, high, frames, CAP_MAX_DEPTH, &truncated);
    }
  }
  clock_gettime(CLOCK_MONOTONIC, &end);
  *depth = found;
  return (uint64_t)(end.tv_sec - start.tv_sec) * 1000000000ull + (uint64_t)(end.tv_nsec - start.tv_nsec);
#else
  (void)images; (void)image_count; (void)iterations;
  *depth = 0;
  return 0;
#endif
}

// MARK: - Images that may be unloaded (dlclose) while we read them

void *cap_image_pin(const char *path, uint64_t bias) {
  if (path == 0 || path[0] == 0) return 0;
  // RTLD_NOLOAD: a reference to the image if it is loaded now, never a load.
  void *handle = dlopen(path, RTLD_LAZY | RTLD_NOLOAD);
  if (handle == 0) return 0;
  struct link_map *map = 0;
  if (dlinfo(handle, RTLD_DI_LINKMAP, &map) != 0 || map == 0 || (uint64_t)map->l_addr != bias) {
    // Same path, another load (unloaded and loaded again elsewhere).
    dlclose(handle);
    return 0;
  }
  return handle;
}

void cap_image_unpin(void *handle) {
  if (handle != 0) dlclose(handle);
}

static int cap_count_one(struct dl_phdr_info *info, size_t size, void *data) {
  (void)size;
  uint64_t *counts = (uint64_t *)data;
  counts[0] = info->dlpi_adds;
  counts[1] = info->dlpi_subs;
  return 1;  // the counters are the same in every entry: one is enough
}

uint64_t cap_image_load_count(void) {
  uint64_t counts[2] = {0, 0};
  dl_iterate_phdr(cap_count_one, counts);
  return counts[0] + (counts[1] << 32);
}

uint64_t cap_vdso_base(void) { return (uint64_t)getauxval(AT_SYSINFO_EHDR); }

void cap_labels_configure(uint64_t key, uint32_t head_offset) {
  atomic_store(&cap_labels_head_offset, head_offset);
  atomic_store(&cap_labels_key, key);
}

void cap_thread_labels_set(uint64_t labels) { cap_thread_labels = labels; }

uint64_t cap_thread_labels_get(void) { return cap_thread_labels; }

int32_t cap_task_locals_calibrate(uint64_t task, uint64_t key, uint64_t value, uint32_t span) {
  cap_session probe;
  cap_range_set *set = cap_private_snapshot(&probe);
  if (set == 0) {
    free(probe.range_sets);
    return -1;
  }
  cap_async_walk walk = {0};
  walk.memory = (const cap_code_range *)set->ranges;
  walk.memory_count = cap_ranges_count(set);
  int32_t found = -1;
  for (uint32_t offset = 8; offset + 8 <= span && found < 0; offset += 8) {
    uint64_t item = 0, item_key = 0, item_value = 0;
    if (!cap_async_read(&walk, task + offset, &item)) continue;
    item &= ~(uint64_t)7;
    if (item == 0 || !cap_async_read(&walk, item + CAP_TASK_LOCAL_KEY, &item_key) || item_key != key) continue;
    if (!cap_async_read(&walk, item + CAP_TASK_LOCAL_VALUE, &item_value) || item_value != value) continue;
    found = (int32_t)offset;
  }
  cap_ranges_release(set);
  free(probe.range_sets);
  return found;
}

uint64_t cap_task_labels_for_test(uint64_t task) {
  cap_session probe;
  cap_range_set *set = cap_private_snapshot(&probe);
  uint64_t labels = 0;
  if (set != 0) {
    cap_async_walk walk = {0};
    walk.memory = (const cap_code_range *)set->ranges;
    walk.memory_count = cap_ranges_count(set);
    labels = cap_async_task_labels(&walk, task, atomic_load(&cap_labels_key), atomic_load(&cap_labels_head_offset));
    cap_ranges_release(set);
  }
  free(probe.range_sets);
  return labels;
}

#endif  // CAP_HAVE_SAMPLER
