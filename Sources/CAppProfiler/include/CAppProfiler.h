// CAppProfiler: the signal path of swift-app-profiler.
//
// This target holds the code that arms sampling (perf events, POSIX CPU
// timers, the wall-clock ticker thread) and the signal handler that records
// one raw stack per interrupt. Everything else — aggregation, symbolization,
// encoding — lives in Swift and reads what this target records.
//
// Two sections below:
//   * "Called from Swift, off the signal path": may allocate, block, open files.
//   * "Callable from the signal handler": the handler and what it calls. These
//     live in signal_handler.c, which only references async-signal-safe libc
//     symbols (enforced by a test that runs `nm -u` on its object file).
#ifndef CAPPPROFILER_H
#define CAPPPROFILER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Deepest stack the handler records. Deeper stacks are cut at the root side
/// and flagged `CAP_SAMPLE_TRUNCATED`.
#define CAP_MAX_DEPTH 256

/// What a sample measures (cap_config.mode).
enum {
  CAP_MODE_CPU = 1,   // a sample = this thread used one interval of CPU time
  CAP_MODE_WALL = 2,  // a sample = one interval of wall time passed for this thread
};

/// Which of the process's C sessions runs a sampler (cap_config.session,
/// and the argument of cap_session_stop, _release, _drain, _stats,
/// _active). One of each runs at a time, independently of the others, so
/// a cpu profile, a wall profile, a thread dump and the flight recorder run
/// at once. Swift's `SamplerSlotID` names them.
enum {
  CAP_SESSION_CPU = 0,
  CAP_SESSION_WALL = 1,
  CAP_SESSION_SNAPSHOT = 2,     // thread dumps: one wall tick, at a fixed time
  CAP_SESSION_FLIGHT_CPU = 3,   // the flight recorder's cpu sampling
  CAP_SESSION_FLIGHT_WALL = 4,  // and its wall sampling
  CAP_SESSION_COUNT = 5
};

/// Limits of a session's configuration, checked by cap_session_start and
/// by Swift's validation (one statement of each).
#define CAP_MIN_INTERVAL_NS 100000ull        /* 100 µs: 10 kHz */
#define CAP_MAX_INTERVAL_NS 1000000000ull    /* 1 s */
#define CAP_MIN_BUFFER_SLOTS 16u
#define CAP_MAX_BUFFER_SLOTS 1048576u        /* 2 GiB of address space at ~2 KiB a slot */
#define CAP_MAX_THREADS 65536u

/// Sampling engines. `CAP_ENGINE_AUTO` picks POSIX CPU timers for cpu mode
/// when the interval is at least one scheduler tick (they cost nothing per
/// context switch), perf events for shorter intervals, and POSIX CPU timers
/// again where `perf_event_open` is refused. The CPU ticker runs when asked.
enum {
  CAP_ENGINE_AUTO = 0,
  CAP_ENGINE_PERF_EVENT = 1,   // perf task-clock per thread, signal on overflow
  CAP_ENGINE_POSIX_TIMER = 2,  // timer_create on each thread's CPU clock
  CAP_ENGINE_WALL_TICKER = 3,  // ticker thread + tgkill to threads that ran
  CAP_ENGINE_CPU_TICKER = 4,   // ticker thread + tgkill to threads whose CPU time passed a target
};

/// Flags of one raw sample.
enum {
  CAP_SAMPLE_IDLE = 1u << 0,       // the thread had not run since its previous sample
  CAP_SAMPLE_TRUNCATED = 1u << 1,  // stack deeper than CAP_MAX_DEPTH; root side cut
  CAP_SAMPLE_REPEAT = 1u << 2,     // no stack: `weight` ticks of the thread's previous stack
  CAP_SAMPLE_NO_STACK_BOUNDS = 1u << 3,  // stack pointer in no known mapping: leaf only
  CAP_SAMPLE_COMPLETE = 1u << 4,   // the walk reached an outermost frame (thread root)
  CAP_SAMPLE_ALLOCATION = 1u << 5, // alloc sampler: weight = bytes, every frame a return address
  CAP_SAMPLE_UNDELIVERED = 1u << 6,    // wall: no stack, the thread's signal was never handled
  CAP_SAMPLE_SIGNAL_BLOCKED = 1u << 7, // with UNDELIVERED: because the thread blocks the signal
  CAP_SAMPLE_LOCK_WAIT = 1u << 8,  // lock sampler: a contended acquisition, weight = the waiter's delay (ns), the waiter's stack
  CAP_SAMPLE_LOCK_HOLD = 1u << 9,  // lock sampler: an unlock others waited for, weight = their delay (ns), the holder's stack
};

/// Kinds of unwind rows (see cap_unwind_row).
enum {
  CAP_ROW_NONE = 0,    // no CFI here: fall back to the frame-pointer step
  CAP_ROW_SP = 1,      // CFA = rsp + cfa_offset
  CAP_ROW_FP = 2,      // CFA = rbp + cfa_offset
  CAP_ROW_PLT = 3,     // PLT stub: CFA = rsp + 8, or + 16 in the stub's second half
  CAP_ROW_SIGNAL = 4,  // signal trampoline: the interrupted context is a ucontext at rsp
  CAP_ROW_ROOT = 5,    // outermost frame (return address undefined): the walk is complete
};

/// "The caller's frame pointer is unchanged" in a row's fp_offset.
#define CAP_FP_SAME INT16_MAX
/// A row's r14_slot: r14 unchanged in this frame, or not trackable.
#define CAP_R14_SAME 0
#define CAP_R14_UNKNOWN INT8_MIN

/// Synthetic frames the handler writes (addresses below 4096 are never code):
/// `[async]` between a task's async callers and the executor that runs it;
/// `[async chain unreadable]` where a context chain could not be followed.
#define CAP_FRAME_ASYNC 6
#define CAP_FRAME_ASYNC_BROKEN 7

/// One row of a compiled .eh_frame table: from `pc` up to the next row's pc,
/// how to find the canonical frame address (CFA), the return address
/// (at CFA - 8 on x86_64), the caller's frame pointer and the caller's r14
/// (the Swift async context register). The parser's output; the handler
/// reads the compact form below.
typedef struct cap_unwind_row {
  uint64_t pc;
  int32_t cfa_offset;
  int16_t fp_offset;   // caller's rbp at CFA + fp_offset, or CAP_FP_SAME
  uint8_t kind;        // CAP_ROW_*
  int8_t r14_slot;     // caller's r14 at CFA + 8 * r14_slot; CAP_R14_SAME, CAP_R14_UNKNOWN
} cap_unwind_row;

/// A row without its pc: how to find the caller. The rows of an image
/// share a few thousand distinct rules at most.
typedef struct cap_unwind_rule {
  int32_t cfa_offset;
  int16_t fp_offset;
  uint8_t kind;
  int8_t r14_slot;
} cap_unwind_rule;

/// The rows of one image, sorted by pc, covering [start, end), 6 bytes a
/// row: row i applies from `start + row_pcs[i]` and follows
/// `rules[row_rules[i]]`.
typedef struct cap_unwind_image {
  uint64_t start;
  uint64_t end;
  const uint32_t *row_pcs;
  const uint16_t *row_rules;
  uint64_t count;
  const cap_unwind_rule *rules;
  uint64_t rule_count;
} cap_unwind_image;

/// [start, end) of one function's code.
typedef struct cap_code_range {
  uint64_t start;
  uint64_t end;
} cap_code_range;

/// Swift concurrency, for both samplers (docs/async-stacks.md). All zero:
/// no async stitching, no task ids.
typedef struct cap_async_config {
  /// The runtime functions that call a task's resume function (the
  /// executor's "run this job" code), sorted. The frame they call is the
  /// running task's async frame; its context chain is stitched in above it.
  const cap_code_range *executors;
  uint32_t executor_count;
  uint32_t stitch;           // 1: stitch async callers into stacks
  /// The current task (what swift_task_getCurrent returns) lives in the
  /// thread's TLS block of module `task_tls_module` at `task_tls_offset`;
  /// module 0: unknown, no task ids.
  uint64_t task_tls_module;
  uint64_t task_tls_offset;
} cap_async_config;

/// Configuration of one session.
typedef struct cap_config {
  int32_t session;         // CAP_SESSION_*: which sampler
  int32_t mode;            // CAP_MODE_*: what a sample measures
  uint32_t fixed_interval; // 1: ticks exactly `interval_ns` apart (thread dumps), 0: randomized (cap_jitter.h)
  int32_t engine;          // CAP_ENGINE_*
  int32_t signal_number;   // usually SIGPROF
  uint32_t buffer_slots;   // raw sample slots (each ~2 KiB of address space)
  uint64_t interval_ns;    // sampling interval
  uint32_t max_threads;    // threads tracked at once; others are counted, not sampled
  uint32_t exclude_kernel; // 1: perf event ignores kernel time; 0: try to include it
  /// Unwind tables, sorted by start and non-overlapping; NULL/0: frame
  /// pointers only. The memory must stay valid until cap_session_release.
  const cap_unwind_image *unwind_images;
  uint64_t unwind_image_count;
  /// Swift concurrency (executor ranges must stay valid like the tables).
  cap_async_config async;
} cap_config;

/// Header of one raw sample as `cap_session_drain` writes it; `depth`
/// addresses (uint64_t, leaf first) follow. Leaf = interrupted PC; the others
/// are return addresses, except async resume points (a task's callers, taken
/// from its context chain), which are function entries stored + 1 so that the
/// same "minus one" lands on them, and synthetic frames (below 4096).
typedef struct cap_sample_header {
  uint64_t timestamp_ns;   // CLOCK_MONOTONIC
  uint64_t weight;         // intervals this sample stands for (timer overruns, repeats)
  int32_t tid;
  uint16_t depth;
  uint16_t flags;          // CAP_SAMPLE_*
  uint64_t object_type;    // alloc: Swift metadata passed to swift_allocObject, else 0
  uint64_t task;           // the running Swift task (AsyncTask *), 0 when none or unknown
  uint64_t labels;         // label set id (Profiler.withLabels / setThreadLabels), 0 for none
  uint64_t heap_id;        // alloc: the allocation's id in the live-heap set, 0 when not tracked
} cap_sample_header;

/// The counters of a session: one list for the handler's atomics
/// (cap_session.counters), their copy (cap_stats) and their clearing.
#define CAP_COUNTERS(X)                                                                          \
  X(samples_written)        /* samples the handler stored */                                     \
  X(samples_dropped)        /* interrupts that found no free slot */                             \
  X(complete_samples)       /* samples whose walk reached the thread's root */                   \
  X(async_stitched)         /* samples with a task's async callers stitched in */                \
  X(async_broken)           /* of those, chains that ended in an unreadable context */           \
  X(repeat_records)         /* run-length records written by the wall ticker */                  \
  X(ticks)                  /* ticker ticks done (wall, cpu ticker) */                           \
  X(missed_ticks)           /* ticks skipped because the ticker fell behind */                   \
  X(signals_sent)           /* signals the ticker sent */                                        \
  X(threads_seen)           /* distinct threads armed during the session */                      \
  X(threads_failed)         /* threads that could not be armed (or table full) */                \
  X(tick_ns_total)          /* ticker time spent inside ticks */                                 \
  X(maps_refreshes)         /* memory-range snapshots taken */                                   \
  X(threads_signal_blocked) /* wall: threads found blocking the signal (SigBlk) */               \
  X(undelivered_ticks)      /* wall: ticks charged to a thread whose signal was never handled */ \
  X(pending_skips)          /* ticks a thread was not signalled: its last signal was pending */

/// Counters of the current (or last) session.
typedef struct cap_stats {
#define CAP_STATS_FIELD(name) uint64_t name;
  CAP_COUNTERS(CAP_STATS_FIELD)
#undef CAP_STATS_FIELD
  int32_t engine;             // CAP_ENGINE_* that actually ran
  int32_t exclude_kernel;     // perf engine: 1 when kernel time was excluded
} cap_stats;

// MARK: - Called from Swift, off the signal path

/// 1 when this build has the sampler (Linux without APP_PROFILER_NO_SAMPLER);
/// 0 elsewhere, where every function below answers "unsupported".
int cap_sampler_available(void);

/// Installs the handler, arms sampling of every current thread, and starts the
/// ticker thread. Returns 0, or a negative errno with `message` filled in.
/// `config->session` says which of the CAP_SESSION_* it is; a second start
/// of a running one returns -EBUSY. The functions below name the session
/// the same way.
int cap_session_start(const cap_config *config, char *message, size_t message_len);

/// The scheduler tick (1/CONFIG_HZ) in nanoseconds, from the resolution of
/// CLOCK_MONOTONIC_COARSE; UINT64_MAX if unknown.
uint64_t cap_scheduler_tick_ns(void);

/// Copies finished samples into `out` (headers followed by their frames) and
/// frees their slots. Returns the number of bytes written; 0 when nothing is
/// ready. `full_scan` also sweeps slots out of order (use it after stop).
size_t cap_session_drain(int32_t session, void *out, size_t capacity, int full_scan);

/// Stops sampling: joins the ticker, disarms every thread and waits until no
/// handler runs. The handler stays installed (a signal of ours may still be
/// pending on a thread that blocks it; delivered later, it is ignored).
/// Wall threads whose last signal was never handled get a record flagged
/// CAP_SAMPLE_UNDELIVERED. Samples stay readable with cap_session_drain.
void cap_session_stop(int32_t session);

/// Releases the session's memory. After this, a new session may start.
void cap_session_release(int32_t session);

/// Copies the counters of the current or last session.
void cap_session_stats(int32_t session, cap_stats *out);

/// 1 while `session` is taken (between start and release).
int cap_session_active(int32_t session);

/// How profiles name `engine` (CAP_ENGINE_*), e.g. "posix_timer(thread-cpu-clock)".
const char *cap_engine_name(int32_t engine, int32_t exclude_kernel);

/// 1 when the handler of this target is installed for `signal_number`.
int cap_handler_installed(int signal_number);

/// Signals the handler saw that were not for a running session, since the
/// process started: `chained` passed to the app's own handler, `ignored`
/// not ours where the app had none (SIG_DFL/SIG_IGN), `stale` ours but late
/// (pending past the end of their session).
void cap_signal_counters(uint64_t *chained, uint64_t *ignored, uint64_t *stale);

/// The calling thread's kernel thread id.
int32_t cap_gettid(void);

/// Bytes of stack below the caller's frame that one sampling signal uses on
/// the interrupted thread (the kernel's signal frame plus the handler and its
/// unwinder), measured by painting the stack; 0 when no session runs. For
/// tests and docs/signal-safety.md.
uint64_t cap_measure_signal_stack(void);

/// One loaded image as dl_iterate_phdr reports it. `program_headers` points
/// at `program_header_count` Elf64_Phdr records (56 bytes each).
typedef struct cap_image_info {
  uint64_t bias;
  const char *name;
  const void *program_headers;
  uint16_t program_header_count;
} cap_image_info;

typedef int (*cap_image_callback)(const cap_image_info *info, void *context);

/// The handler's row lookup: the rule that holds at `pc` in `images`, or
/// 0 (no row: the walk falls back to frame pointers). For tests.
const cap_unwind_rule *cap_unwind_find_for_test(const cap_unwind_image *images, uint64_t image_count, uint64_t pc);

/// The CFI unwinder the handler uses (x86_64), callable from tests with a
/// synthetic stack. Returns the frame count.
uint32_t cap_unwind_cfi_for_test(const cap_unwind_image *images, uint64_t image_count, uint64_t pc,
                                 uint64_t sp, uint64_t fp, uint64_t stack_low, uint64_t stack_high,
                                 uint64_t *frames, uint32_t max_frames, int *truncated, int *complete);

/// The same walk with async stitching, for tests with synthetic stacks and
/// contexts: `r14` is the interrupted r14; `memory` the readable ranges
/// (contexts are read only inside them); `executors` as in cap_async_config.
/// `*stitched`/`*broken` report what the walk did.
uint32_t cap_unwind_async_for_test(const cap_unwind_image *images, uint64_t image_count, uint64_t pc,
                                   uint64_t sp, uint64_t fp, uint64_t r14, uint64_t stack_low,
                                   uint64_t stack_high, const cap_code_range *memory, uint32_t memory_count,
                                   const cap_code_range *executors, uint32_t executor_count,
                                   uint64_t *frames, uint32_t max_frames, int *truncated, int *stitched,
                                   int *broken);

/// Where the running task's pointer lives in TLS (see cap_async_config),
/// found by reading the code of the runtime's `swift_task_getCurrent` at
/// `function` (x86_64: lea of a TLS descriptor, call __tls_get_addr, load at
/// an offset). Returns 1 and fills module/offset, or 0 where the code has
/// another shape.
int cap_task_tls_locate(const void *function, uint64_t *module, uint64_t *offset);

/// Labels (docs/labels.md): where the handler finds the label set of the
/// running task. `key` is the TaskLocal object whose value is the label set
/// box; `head_offset` is the offset in an AsyncTask of its task-local chain
/// head (found by calibration, cap_task_locals_calibrate). Set once; both 0:
/// task labels off. The box's first stored property (byte 16) is its id.
void cap_labels_configure(uint64_t key, uint32_t head_offset);

/// Finds `head_offset` for cap_labels_configure: called inside a task that
/// has just bound `value` to `key` (TaskLocal.withValue), it looks in the
/// first `span` bytes of `task` for the pointer to a task-local item holding
/// that key and value (item: next, key, value type, value at 24), every read
/// inside a fresh snapshot of the process's mappings. Returns the offset,
/// or -1.
int32_t cap_task_locals_calibrate(uint64_t task, uint64_t key, uint64_t value, uint32_t span);

/// The calling thread's label set id for samples taken where no task label
/// applies (0: none). Thread-local; read by the handler.
void cap_thread_labels_set(uint64_t labels);
uint64_t cap_thread_labels_get(void);

/// The label set id of the running task as the handler reads it (the chain
/// walk, every read in a fresh snapshot); for tests. 0 when none.
uint64_t cap_task_labels_for_test(uint64_t task);

/// The current task as the handler reads it (TLS through the thread's DTV,
/// every read inside the session's memory snapshot); for tests. 0 when the
/// thread runs no task, or no session is active.
uint64_t cap_current_task_for_test(uint64_t module, uint64_t offset);

/// Benchmark: walks the calling thread's own stack `iterations` times (CFI
/// when image_count > 0, else frame pointers); returns the total
/// nanoseconds and the depth of one walk in *depth.
uint64_t cap_benchmark_unwind(const cap_unwind_image *images, uint64_t image_count, uint32_t iterations,
                              uint32_t *depth);

/// Benchmarks: sends the running session's own signal (SI_QUEUE with its
/// cookie, as the wall ticker does) to the calling thread `iterations`
/// times, so each one takes a sample of this thread's stack right here: the
/// whole per-sample cost (kernel delivery and the handler). Returns the
/// nanoseconds taken, 0 when no session runs.
uint64_t cap_benchmark_self_signal(uint32_t iterations);

/// dl_iterate_phdr, for Swift (its Glibc module does not export <link.h>).
void cap_iterate_images(cap_image_callback callback, void *context);

/// Keeps the image loaded from `path` at load bias `bias` mapped until
/// cap_image_unpin, so its memory can be read while another thread may
/// dlclose it (dlopen with RTLD_NOLOAD: never loads anything). NULL when it
/// is no longer loaded there. The main executable and the vDSO are never
/// unloaded and need no pin.
void *cap_image_pin(const char *path, uint64_t bias);
void cap_image_unpin(void *handle);

/// Returns the heap's free pages to the kernel (glibc's malloc_trim(0));
/// nothing elsewhere. Called once a profile is built: building unwind tables
/// and symbolizing free tens of MB that malloc would otherwise keep.
void cap_release_free_heap(void);

/// Address of the vDSO's ELF header (getauxval(AT_SYSINFO_EHDR)), 0 if none.
uint64_t cap_vdso_base(void);

/// Changes whenever an image is loaded or unloaded (dl_iterate_phdr's
/// dlpi_adds and dlpi_subs); cheap enough to poll.
uint64_t cap_image_load_count(void);

// MARK: - Allocation sampler (alloc_linux.c), called from Swift

/// What the samplers whose wrappers are put in GOT entries (allocations,
/// locks) share: their ring and how they walk stacks.
typedef struct cap_wrapper_config {
  uint32_t buffer_slots;   // raw sample slots mapped
  uint32_t initial_slots;  // slots in use at first (grown by the drain as bursts need); 0: all
  /// Unwind tables as in cap_config; must stay valid until the sampler's release.
  const cap_unwind_image *unwind_images;
  uint64_t unwind_image_count;
  cap_async_config async;
} cap_wrapper_config;

/// Configuration of the allocation sampler.
typedef struct cap_alloc_config {
  uint64_t mean_bytes;     // mean bytes between samples (exponential countdown per thread)
  cap_wrapper_config wrapper;
} cap_alloc_config;

/// Counters of the allocation sampler.
typedef struct cap_alloc_stats {
  uint64_t samples_written;
  uint64_t samples_dropped;   // samples that found no free slot
  uint64_t complete_samples;
  uint64_t patched_slots;     // GOT entries redirected by the last install
  uint64_t patched_images;    // images with at least one redirected entry
  uint64_t mean_bytes;
  uint64_t async_stitched;    // samples with a task's async callers stitched in
  uint64_t async_broken;      // of those, chains cut by an unreadable context
} cap_alloc_stats;

/// Maps the buffer, then redirects the GOT entries of malloc, calloc,
/// realloc, posix_memalign, aligned_alloc, memalign and swift_allocObject in
/// every loaded image (except the dynamic linker and libc) to sampling
/// wrappers. Returns 0 or a negative errno with `message` filled in; -EBUSY
/// when the sampler is already installed.
int cap_alloc_start(const cap_alloc_config *config, char *message, size_t message_len);

/// Redirects entries of images loaded since the last call (dlopen). Returns
/// the number of entries newly redirected.
int cap_alloc_patch_new_images(void);

/// Restores every redirected entry, then waits until no wrapper is recording.
/// Samples stay readable with cap_alloc_drain.
void cap_alloc_stop(void);

/// Unmaps the buffer and empties the live-heap set (read it with
/// cap_heap_live_ids before). After this, cap_alloc_start may run again.
void cap_alloc_release(void);

/// Like cap_session_drain, for the allocation sampler. Also refreshes the
/// stack-bounds snapshot when a wrapper found a stack it did not know.
size_t cap_alloc_drain(void *out, size_t capacity, int full_scan);

void cap_alloc_stats_get(cap_alloc_stats *out);

/// The live-heap set (heap_set.c): sampled allocations not freed yet.
typedef struct cap_heap_stats {
  uint64_t capacity;        // entries of the current table (0: tracking off)
  uint64_t live;            // sampled allocations alive now
  uint64_t used;            // live + retired slots not yet reclaimed
  uint64_t untracked;       // samples left out: table full or being rebuilt
  uint64_t retired;         // sampled allocations seen freed
  uint64_t rebuilds;
  uint64_t max_live;        // the bound on live entries
  uint64_t reserved_bytes;  // address space reserved for the tables (resident: touched pages only)
} cap_heap_stats;

void cap_heap_stats_get(cap_heap_stats *out);

/// Drain thread: rebuilds the table when retired slots pile up or the live
/// entries outgrow (or far undergrow) it. Returns 1 when it rebuilt.
int cap_heap_maintain(void);

/// Copies the ids of the live sampled allocations into `out` (at most
/// `capacity`) and returns how many; `next_id` gets the id the next sample
/// will take (ids are increasing). Ids of samples drained before this call
/// and absent from the result were freed.
size_t cap_heap_live_ids(uint64_t *out, size_t capacity, uint64_t *next_id);

/// GOT entries of loaded images that point at a wrapper right now (0 once
/// stopped). For tests.
int cap_alloc_redirected_entries(void);

/// Wrapper calls made by the calling thread so far. For tests.
uint64_t cap_alloc_thread_calls(void);

/// The calling thread's allocations are not sampled while `ignored` is 1
/// (the profiler's own threads). Returns the previous value.
int cap_alloc_set_thread_ignored(int ignored);

// MARK: - Lock sampler (lock_linux.c, docs/locks.md), called from Swift

/// Configuration of the lock sampler.
typedef struct cap_lock_config {
  uint64_t rate_ns;        // a delay of d ns is sampled with probability min(1, d / rate_ns) (Go's block profile rate)
  cap_wrapper_config wrapper;
} cap_lock_config;

/// Counters of the lock sampler (since its start).
typedef struct cap_lock_stats {
  uint64_t samples_written;
  uint64_t samples_dropped;   // samples that found no free slot
  uint64_t complete_samples;
  uint64_t contentions;       // contended acquisitions seen (sampled or not)
  uint64_t untracked_locks;   // contentions whose holder could not be charged (lock table full)
  uint64_t patched_slots;     // GOT entries redirected by the last install
  uint64_t patched_images;
  uint64_t rate_ns;
  uint64_t async_stitched;
  uint64_t async_broken;
} cap_lock_stats;

/// Maps the buffer, then redirects the GOT entries of pthread_mutex_lock,
/// pthread_mutex_timedlock, pthread_mutex_unlock, pthread_rwlock_rdlock,
/// pthread_rwlock_wrlock and pthread_rwlock_unlock in every loaded image
/// (except the dynamic linker and libc) to measuring wrappers. Returns 0 or
/// a negative errno with `message` filled in; -EBUSY when already installed.
int cap_lock_start(const cap_lock_config *config, char *message, size_t message_len);

/// Redirects entries of images loaded since the last call (dlopen).
int cap_lock_patch_new_images(void);

/// Restores every redirected entry, then waits until no wrapper is recording.
/// Samples stay readable with cap_lock_drain.
void cap_lock_stop(void);

/// Unmaps the buffer. After this, cap_lock_start may run again.
void cap_lock_release(void);

/// Like cap_session_drain, for the lock sampler.
size_t cap_lock_drain(void *out, size_t capacity, int full_scan);

void cap_lock_stats_get(cap_lock_stats *out);

/// GOT entries of loaded images that point at a lock wrapper right now. For tests.
int cap_lock_redirected_entries(void);

/// The calling thread's lock waits are not recorded while `ignored` is 1
/// (the profiler's own threads). Returns the previous value.
int cap_lock_set_thread_ignored(int ignored);

// MARK: - Task registry (task_registry_linux.c, docs/tasks.md)

/// One live task: its address and when it was created (CLOCK_MONOTONIC ns).
typedef struct cap_task_entry {
  uint64_t task;
  uint64_t created_ns;
} cap_task_entry;

enum cap_task_registry_state { CAP_TASKS_UNSUPPORTED = 0, CAP_TASKS_ON = 1, CAP_TASKS_OFF = 2 };

typedef struct cap_task_registry_info {
  int state;              // cap_task_registry_state
  uint64_t live;          // tasks registered now
  uint64_t seen;          // tasks created since installation
  uint64_t unrecorded;    // created but not recorded (the table could not grow)
  uint64_t capacity;      // table entries
  uint64_t table_bytes;
  uint64_t installed_ns;  // CLOCK_MONOTONIC
  uint64_t create_start, create_end;  // swift_task_create_common
  char reason[160];       // why not on
} cap_task_registry_info;

/// Installs the registry (done by a constructor at load; idempotent).
void cap_task_registry_install(void);
void cap_task_registry_status(cap_task_registry_info *out);
/// Copies the live entries into `out` when they fit in `capacity`; returns
/// how many are live (call again with more room when larger).
uint64_t cap_task_registry_copy(cap_task_entry *out, uint64_t capacity);
/// Copies `bytes` at `address` when all of them are readable (a system
/// call reads them: an unmapped page is 0, never a fault). 1 on success.
int cap_read_memory(uint64_t address, void *buffer, uint64_t bytes);
/// `count` reads of `bytes` each, at `addresses[i]` into `buffer + i * bytes`,
/// in as few system calls as the kernel allows (up to 512 regions each);
/// `ok[i]` says whether region i was read whole. Returns how many were.
uint64_t cap_read_memory_many(const uint64_t *addresses, uint64_t count, uint64_t bytes, void *buffer, uint8_t *ok);

// MARK: - Callable from the signal handler (signal_handler.c)

/// The handler installed with SA_SIGINFO | SA_RESTART.
void cap_signal_handler(int signal_number, void *info, void *ucontext);

#ifdef __cplusplus
}
#endif

#endif
