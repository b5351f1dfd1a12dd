// The unwinders read the interrupted thread's stack: frames of other
// functions, whose red zones AddressSanitizer poisons and whose slots
// ThreadSanitizer may see as racing with their owner. Those reads are the
// point of a profiler and are bounds-checked against the stack's mapping;
// keep the sanitizers out of exactly these functions (the rest of the
// target, and the Swift code, stays instrumented).
#ifndef CAP_SANITIZER_H
#define CAP_SANITIZER_H

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define CAP_NO_SANITIZE __attribute__((no_sanitize("address", "thread")))
#endif
#endif
#ifndef CAP_NO_SANITIZE
#define CAP_NO_SANITIZE
#endif

// Callbacks of dl_iterate_phdr run under the loader's lock. ThreadSanitizer
// takes its own locks in instrumented code and in its interceptors, and
// calls dl_iterate_phdr while holding them when it symbolizes a report: a
// lock-order inversion that hung the suite (found under TSan). Such callbacks
// are therefore not instrumented at all and call no intercepted function.
#if defined(__has_attribute)
#if __has_attribute(disable_sanitizer_instrumentation)
#define CAP_NO_INSTRUMENT __attribute__((disable_sanitizer_instrumentation))
#endif
#endif
#ifndef CAP_NO_INSTRUMENT
#define CAP_NO_INSTRUMENT CAP_NO_SANITIZE
#endif

#endif
