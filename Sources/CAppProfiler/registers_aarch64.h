// aarch64 Linux: x29 is the frame pointer, x30 the link register.
// Frame record (AAPCS64): [x29] = caller's x29, [x29 + 8] = return address.
#ifndef CAP_REGISTERS_AARCH64_H
#define CAP_REGISTERS_AARCH64_H

#include <stdint.h>
#include <ucontext.h>

static inline uint64_t cap_context_pc(const ucontext_t *uc) {
  return (uint64_t)uc->uc_mcontext.pc;
}
static inline uint64_t cap_context_fp(const ucontext_t *uc) {
  return (uint64_t)uc->uc_mcontext.regs[29];
}
static inline uint64_t cap_context_sp(const ucontext_t *uc) {
  return (uint64_t)uc->uc_mcontext.sp;
}

#endif
