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

#endif
