// Which parts of the C target a build has.
//
//   CAP_HAVE_SAMPLER  the sampler (signals, engines, unwinding, allocation
//                     wrappers): Linux, unless the build defines
//                     APP_PROFILER_NO_SAMPLER (`APP_PROFILER_NO_SAMPLER=1 swift build`: Package.swift defines it for this target),
//                     which CI uses to compile and test the fallback that
//                     every other platform gets.
//
// Without them, cap_stubs.c provides the same functions, answering
// "unsupported" (-ENOSYS, zeros).
#ifndef CAP_PLATFORM_H
#define CAP_PLATFORM_H

#if defined(__linux__) && !defined(APP_PROFILER_NO_SAMPLER)
#define CAP_HAVE_SAMPLER 1
#else
#define CAP_HAVE_SAMPLER 0
#endif

#endif
