// x86_64 Linux: the interrupted registers live in uc_mcontext.gregs.
// Frame record (System V, frame pointers kept): [rbp] = caller's rbp,
// [rbp + 8] = return address.
#ifndef CAP_REGISTERS_X86_64_H
#define CAP_REGISTERS_X86_64_H

#include <stdint.h>
#include <ucontext.h>

static inline uint64_t cap_context_pc(const ucontext_t *uc) {
  return (uint64_t)uc->uc_mcontext.gregs[REG_RIP];
}
static inline uint64_t cap_context_fp(const ucontext_t *uc) {
  return (uint64_t)uc->uc_mcontext.gregs[REG_RBP];
}
static inline uint64_t cap_context_sp(const ucontext_t *uc) {
  return (uint64_t)uc->uc_mcontext.gregs[REG_RSP];
}

#endif
