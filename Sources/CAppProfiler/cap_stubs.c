// The C target without the sampler (every platform but Linux, or a Linux
// build with APP_PROFILER_NO_SAMPLER): the same functions, answering
// "unsupported". Swift checks cap_sampler_available() first and throws
// ProfilerError.unsupportedPlatform; these keep everything else linking.
#include "cap_platform.h"
#include "CAppProfiler.h"

#include <errno.h>
#include <string.h>

int cap_sampler_available(void) { return CAP_HAVE_SAMPLER; }

#if !CAP_HAVE_SAMPLER
#include <pthread.h>
#include <stdio.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

static void unsupported(char *message, size_t message_len) {
  if (message != 0 && message_len > 0) snprintf(message, message_len, "no sampler in this build");
}

int cap_session_start(const cap_config *config, char *message, size_t message_len) {
  (void)config;
  unsupported(message, message_len);
  return -ENOSYS;
}
uint64_t cap_scheduler_tick_ns(void) { return 10000000ull; }
size_t cap_session_drain(int32_t session, void *out, size_t capacity, int full_scan) {
  (void)session, (void)out, (void)capacity, (void)full_scan;
  return 0;
}
void cap_session_stop(int32_t session) { (void)session; }
void cap_session_release(int32_t session) { (void)session; }
void cap_session_stats(int32_t session, cap_stats *out) {
  (void)session;
  memset(out, 0, sizeof *out);
}
int cap_session_active(int32_t session) {
  (void)session;
  return 0;
}
const char *cap_engine_name(int32_t engine, int32_t exclude_kernel) {
  (void)engine, (void)exclude_kernel;
  return "none";
}
int cap_handler_installed(int signal_number) {
  (void)signal_number;
  return 0;
}
void cap_signal_counters(uint64_t *chained, uint64_t *ignored, uint64_t *stale) {
  *chained = 0, *ignored = 0, *stale = 0;
}
int32_t cap_gettid(void) {
#if defined(__linux__)
  return (int32_t)syscall(SYS_gettid);
#else
  uint64_t id = 0;
  pthread_threadid_np(0, &id);
  return (int32_t)id;
#endif
}
uint64_t cap_measure_signal_stack(void) { return 0; }
const cap_unwind_rule *cap_unwind_find_for_test(const cap_unwind_image *images, uint64_t image_count, uint64_t pc) {
  (void)images, (void)image_count, (void)pc;
  return 0;
}
uint32_t cap_unwind_cfi_for_test(const cap_unwind_image *images, uint64_t image_count, uint64_t pc, uint64_t sp,
                                 uint64_t fp, uint64_t stack_low, uint64_t stack_high, uint64_t *frames,
                                 uint32_t max_frames, int *truncated, int *complete) {
  (void)images, (void)image_count, (void)pc, (void)sp, (void)fp, (void)stack_low, (void)stack_high, (void)frames,
      (void)max_frames;
  *truncated = 0, *complete = 0;
  return 0;
}
uint32_t cap_unwind_async_for_test(const cap_unwind_image *images, uint64_t image_count, uint64_t pc, uint64_t sp,
                                   uint64_t fp, uint64_t r14, uint64_t stack_low, uint64_t stack_high,
                                   const cap_code_range *memory, uint32_t memory_count,
                                   const cap_code_range *executors, uint32_t executor_count, uint64_t *frames,
                                   uint32_t max_frames, int *truncated, int *stitched, int *broken) {
  (void)images, (void)image_count, (void)pc, (void)sp, (void)fp, (void)r14, (void)stack_low, (void)stack_high,
      (void)memory, (void)memory_count, (void)executors, (void)executor_count, (void)frames, (void)max_frames;
  *truncated = 0, *stitched = 0, *broken = 0;
  return 0;
}
int cap_task_tls_locate(const void *function, uint64_t *module, uint64_t *offset) {
  (void)function, (void)module, (void)offset;
  return 0;
}
void cap_labels_configure(uint64_t key, uint32_t head_offset) { (void)key, (void)head_offset; }
int32_t cap_task_locals_calibrate(uint64_t task, uint64_t key, uint64_t value, uint32_t span) {
  (void)task, (void)key, (void)value, (void)span;
  return -1;
}
static __thread uint64_t thread_labels;
void cap_thread_labels_set(uint64_t labels) { thread_labels = labels; }
uint64_t cap_thread_labels_get(void) { return thread_labels; }
uint64_t cap_task_labels_for_test(uint64_t task) {
  (void)task;
  return 0;
}
uint64_t cap_current_task_for_test(uint64_t module, uint64_t offset) {
  (void)module, (void)offset;
  return 0;
}
uint64_t cap_benchmark_unwind(const cap_unwind_image *images, uint64_t image_count, uint32_t iterations,
                              uint32_t *depth) {
  (void)images, (void)image_count, (void)iterations;
  *depth = 0;
  return 0;
}
uint64_t cap_benchmark_self_signal(uint32_t iterations) {
  (void)iterations;
  return 0;
}
void cap_iterate_images(cap_image_callback callback, void *context) { (void)callback, (void)context; }
void *cap_image_pin(const char *path, uint64_t bias) {
  (void)path, (void)bias;
  return 0;
}
void cap_image_unpin(void *handle) { (void)handle; }
uint64_t cap_vdso_base(void) { return 0; }
void cap_release_free_heap(void) {}
uint64_t cap_image_load_count(void) { return 0; }
int cap_alloc_start(const cap_alloc_config *config, char *message, size_t message_len) {
  (void)config;
  unsupported(message, message_len);
  return -ENOSYS;
}
int cap_alloc_patch_new_images(void) { return 0; }
void cap_alloc_stop(void) {}
void cap_alloc_release(void) {}
size_t cap_alloc_drain(void *out, size_t capacity, int full_scan) {
  (void)out, (void)capacity, (void)full_scan;
  return 0;
}
void cap_alloc_stats_get(cap_alloc_stats *out) { memset(out, 0, sizeof *out); }
int cap_alloc_redirected_entries(void) { return 0; }
void cap_heap_stats_get(cap_heap_stats *out) { memset(out, 0, sizeof *out); }
int cap_heap_maintain(void) { return 0; }
size_t cap_heap_live_ids(uint64_t *out, size_t capacity, uint64_t *next_id) {
  (void)out;
  (void)capacity;
  *next_id = 0;
  return 0;
}
uint64_t cap_alloc_thread_calls(void) { return 0; }
int cap_alloc_set_thread_ignored(int ignored) {
  (void)ignored;
  return 0;
}
int cap_lock_start(const cap_lock_config *config, char *message, size_t message_len) {
  (void)config;
  unsupported(message, message_len);
  return -ENOSYS;
}
int cap_lock_patch_new_images(void) { return 0; }
void cap_lock_stop(void) {}
void cap_lock_release(void) {}
size_t cap_lock_drain(void *out, size_t capacity, int full_scan) {
  (void)out, (void)capacity, (void)full_scan;
  return 0;
}
void cap_lock_stats_get(cap_lock_stats *out) { memset(out, 0, sizeof *out); }
int cap_lock_redirected_entries(void) { return 0; }
int cap_lock_set_thread_ignored(int ignored) {
  (void)ignored;
  return 0;
}
void cap_signal_handler(int signal_number, void *info, void *ucontext) {
  (void)signal_number, (void)info, (void)ucontext;
}
void cap_task_registry_install(void) {}
void cap_task_registry_status(cap_task_registry_info *out) {
  memset(out, 0, sizeof *out);
  const char reason[] = "the task registry is built for Linux only";
  memcpy(out->reason, reason, sizeof reason);
}
uint64_t cap_task_registry_copy(cap_task_entry *out, uint64_t capacity) {
  (void)out, (void)capacity;
  return 0;
}
int cap_read_memory(uint64_t address, void *buffer, uint64_t bytes) {
  (void)address, (void)buffer, (void)bytes;
  return 0;
}
uint64_t cap_read_memory_many(const uint64_t *addresses, uint64_t count, uint64_t bytes, void *buffer, uint8_t *ok) {
  (void)addresses, (void)bytes, (void)buffer;
  memset(ok, 0, count);
  return 0;
}
#endif  // !CAP_HAVE_SAMPLER
