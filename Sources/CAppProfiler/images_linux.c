// dl_iterate_phdr for the Swift side (symbolization and, later, unwind
// tables). Not on the signal path.
#define _GNU_SOURCE
#include "include/CAppProfiler.h"
#include "unwind_cfi.h"
#include <link.h>

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
