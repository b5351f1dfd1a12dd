// Register access for the interrupted context, one file per CPU.
// Each provides cap_context_pc/_fp/_sp(ucontext_t *) as static inline functions.
#ifndef CAP_REGISTERS_H
#define CAP_REGISTERS_H

#if defined(__x86_64__)
#include "registers_x86_64.h"
#elif defined(__aarch64__)
#include "registers_aarch64.h"
#else
#error "swift-app-profiler supports x86_64 and aarch64 Linux"
#endif

#endif
