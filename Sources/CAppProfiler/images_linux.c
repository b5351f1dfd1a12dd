// dl_iterate_phdr for the Swift side (symbolization and, later, unwind
// tables). Not on the signal path.
#define _GNU_SOURCE
#include "include/CAppProfiler.h"
#include "unwind_cfi.h"
#include "unwind_fp.h"
#include <link.h>
#include <pthread.h>
#include <time.h>

uint32_t cap_unwind_cfi_for_test(const cap_unwind_image *images, uint64_t image_count, uint64_t pc,
                                 uint64_t sp, uint64_t fp, uint64_t stack_low, uint64_t stack_high,
                                 uint64_t *frames, uint32_t max_frames, int *truncated, int *complete) {
  return cap_unwind_cfi(images, image_count, pc, sp, fp, stack_low, stack_high, frames, max_frames,
                        truncated, complete);
}

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
      found = cap_unwind_cfi(images, image_count, pc, sp, fp, sp, high, frames, CAP_MAX_DEPTH, &truncated,
                             &complete);
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
