// dl_iterate_phdr for the Swift side (symbolization and, later, unwind
// tables). Not on the signal path.
#define _GNU_SOURCE
#include "include/CAppProfiler.h"
#include <link.h>

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
