// Pointing the GOT entries of a set of functions (malloc & co. for the
// allocation sampler, pthread's locks for the lock sampler) at their
// wrappers, and back. Each loaded image calls those functions through its GOT
// (JUMP_SLOT/GLOB_DAT relocations); entries inside PT_GNU_RELRO are made
// writable for the one store. The walk runs in dl_iterate_phdr's callback,
// under the loader's lock, so an image cannot be unloaded under it. Off the
// wrapped paths; callers hold their sampler's patch lock.
#define _GNU_SOURCE
#include "cap_platform.h"
#if CAP_HAVE_SAMPLER
#include "alloc_internal.h"
#include "cap_sanitizer.h"

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <link.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define CAP_MAX_PATCHES 8192

typedef struct cap_walk {
  cap_hook_set *set;
  int action;
  uint64_t changed;        // entries written (patch, restore) or found (count)
  uint64_t images;         // images with at least one entry changed
  int error;
  uint64_t page_size;      // read before the walk: sysconf is not called under the loader lock
} cap_walk;

static cap_walk cap_walk_new(cap_hook_set *set, int action) {
  cap_walk walk = {set, action, 0, 0, 0, (uint64_t)sysconf(_SC_PAGESIZE)};
  return walk;
}

// The walk runs under the loader's lock (dl_iterate_phdr): no instrumented
// code and no intercepted libc calls there (see cap_sanitizer.h), hence these
// instead of strcmp/strncmp and a raw mprotect system call.
CAP_NO_INSTRUMENT static int cap_text_equal(const char *a, const char *b) {
  while (*a != 0 && *a == *b) {
    a++;
    b++;
  }
  return *a == *b;
}

CAP_NO_INSTRUMENT static int cap_text_starts(const char *text, const char *prefix) {
  while (*prefix != 0) {
    if (*text++ != *prefix++) return 0;
  }
  return 1;
}

CAP_NO_INSTRUMENT static int cap_protect(uint64_t page, uint64_t size, int protection) {
  return syscall(SYS_mprotect, (void *)(uintptr_t)page, (size_t)size, protection) == 0 ? 0 : -errno;
}

#if defined(__x86_64__)
#define CAP_R_JUMP_SLOT R_X86_64_JUMP_SLOT
#define CAP_R_GLOB_DAT R_X86_64_GLOB_DAT
#elif defined(__aarch64__)
#define CAP_R_JUMP_SLOT R_AARCH64_JUMP_SLOT
#define CAP_R_GLOB_DAT R_AARCH64_GLOB_DAT
#endif

CAP_NO_INSTRUMENT static int cap_skip_image(const char *name) {
  if (name == 0 || name[0] == 0) return 0;  // the executable
  const char *base = name;
  for (const char *c = name; *c != 0; c++) {
    if (*c == '/') base = c + 1;
  }
  // The dynamic linker and libc: their internal allocations are theirs; the
  // vDSO has no GOT.
  return cap_text_starts(base, "ld-linux") || cap_text_starts(base, "ld-musl") ||
         cap_text_starts(base, "libc.so") || cap_text_starts(base, "linux-vdso") ||
         cap_text_starts(base, "linux-gate");
}

CAP_NO_INSTRUMENT static int cap_store_slot(uint64_t *slot, uint64_t value, uint64_t relro_start,
                                            uint64_t relro_end, uint64_t page_size) {
  uint64_t address = (uint64_t)(uintptr_t)slot;
  uint64_t page = address & ~(page_size - 1);
  int protect = address >= relro_start && address + 8 <= relro_end;
  if (protect) {
    int error = cap_protect(page, page_size, PROT_READ | PROT_WRITE);
    if (error != 0) return error;
  }
  __atomic_store_n(slot, value, __ATOMIC_SEQ_CST);
  if (protect) cap_protect(page, page_size, PROT_READ);
  return 0;
}

CAP_NO_INSTRUMENT static void cap_walk_relocations(cap_walk *walk, uint64_t bias, const ElfW(Rela) *relocations, uint64_t bytes,
                                 const ElfW(Sym) *symbols, const char *strings, uint64_t string_bytes,
                                 uint64_t relro_start, uint64_t relro_end, int *image_changed) {
  if (relocations == 0 || symbols == 0 || strings == 0) return;
  uint64_t count = bytes / sizeof(ElfW(Rela));
  for (uint64_t i = 0; i < count; i++) {
    uint64_t type = ELF64_R_TYPE(relocations[i].r_info);
    if (type != CAP_R_JUMP_SLOT && type != CAP_R_GLOB_DAT) continue;
    uint64_t symbol = ELF64_R_SYM(relocations[i].r_info);
    if (symbol == 0) continue;
    uint64_t name_offset = symbols[symbol].st_name;
    if (string_bytes != 0 && name_offset >= string_bytes) continue;
    const char *name = strings + name_offset;
    cap_hook_set *set = walk->set;
    for (size_t h = 0; h < set->count; h++) {
      const cap_hook *entry = &set->hooks[h];
      if (!cap_text_equal(name, entry->name)) continue;
      uint64_t *slot = (uint64_t *)(uintptr_t)(bias + relocations[i].r_offset);
      uint64_t current = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
      // The task registry's entry (libswift_Concurrency's malloc, free):
      // its onward pointer is redirected instead, so it sees every task.
      uint64_t *chained = set->follows_task_registry ? cap_task_chain_slot(name, current) : 0;
      uint64_t slot_relro_start = relro_start, slot_relro_end = relro_end;
      if (chained != 0) {
        slot = chained;
        current = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
        slot_relro_start = slot_relro_end = 0;
      }
      uint64_t hook = (uint64_t)(uintptr_t)entry->hook;
      if (walk->action == CAP_WALK_COUNT) {
        if (current == hook) walk->changed++;
      } else if (walk->action == CAP_WALK_PATCH) {
        if (current == hook || *entry->real == 0) break;
        if (set->patch_count == set->patch_capacity) {
          walk->error = -ENOSPC;
          break;
        }
        int stored = cap_store_slot(slot, hook, slot_relro_start, slot_relro_end, walk->page_size);
        if (stored != 0) {
          walk->error = stored;
          break;
        }
        set->patches[set->patch_count].slot = slot;
        set->patches[set->patch_count].original = current;
        set->patch_count++;
        walk->changed++;
        *image_changed = 1;
      } else if (walk->action == CAP_WALK_RESTORE) {
        if (current != hook) break;
        uint64_t original = (uint64_t)(uintptr_t)*entry->real;
        for (uint32_t p = 0; p < set->patch_count; p++) {
          if (set->patches[p].slot == slot) {
            original = set->patches[p].original;
            break;
          }
        }
        if (cap_store_slot(slot, original, slot_relro_start, slot_relro_end, walk->page_size) == 0) {
          walk->changed++;
          *image_changed = 1;
        }
      }
      break;
    }
  }
}

CAP_NO_INSTRUMENT static int cap_walk_image(struct dl_phdr_info *info, size_t size, void *context) {
  (void)size;
  cap_walk *walk = (cap_walk *)context;
  if (cap_skip_image(info->dlpi_name)) return 0;
  uint64_t bias = info->dlpi_addr;
  const ElfW(Dyn) *dynamic = 0;
  uint64_t relro_start = 0, relro_end = 0;
  uint64_t page_size = walk->page_size;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *header = &info->dlpi_phdr[i];
    if (header->p_type == PT_DYNAMIC) dynamic = (const ElfW(Dyn) *)(uintptr_t)(bias + header->p_vaddr);
    if (header->p_type == PT_GNU_RELRO) {
      // The loader protects whole pages: start rounded down, end rounded down.
      relro_start = (bias + header->p_vaddr) & ~((uint64_t)page_size - 1);
      relro_end = (bias + header->p_vaddr + header->p_memsz) & ~((uint64_t)page_size - 1);
    }
  }
  if (dynamic == 0) return 0;
  uint64_t symtab = 0, strtab = 0, strsz = 0, rela = 0, relasz = 0, jmprel = 0, pltrelsz = 0, pltrel = DT_RELA;
  for (const ElfW(Dyn) *entry = dynamic; entry->d_tag != DT_NULL; entry++) {
    switch (entry->d_tag) {
    case DT_SYMTAB: symtab = entry->d_un.d_ptr; break;
    case DT_STRTAB: strtab = entry->d_un.d_ptr; break;
    case DT_STRSZ: strsz = entry->d_un.d_val; break;
    case DT_RELA: rela = entry->d_un.d_ptr; break;
    case DT_RELASZ: relasz = entry->d_un.d_val; break;
    case DT_JMPREL: jmprel = entry->d_un.d_ptr; break;
    case DT_PLTRELSZ: pltrelsz = entry->d_un.d_val; break;
    case DT_PLTREL: pltrel = entry->d_un.d_val; break;
    default: break;
    }
  }
  // glibc stores these relocated in place; other loaders may not.
#define CAP_ADJUST(value) ((value) != 0 && (value) < bias ? (value) + bias : (value))
  const ElfW(Sym) *symbols = (const ElfW(Sym) *)(uintptr_t)CAP_ADJUST(symtab);
  const char *strings = (const char *)(uintptr_t)CAP_ADJUST(strtab);
  int changed = 0;
  cap_walk_relocations(walk, bias, (const ElfW(Rela) *)(uintptr_t)CAP_ADJUST(rela), relasz, symbols, strings,
                       strsz, relro_start, relro_end, &changed);
  if (pltrel == DT_RELA) {
    cap_walk_relocations(walk, bias, (const ElfW(Rela) *)(uintptr_t)CAP_ADJUST(jmprel), pltrelsz, symbols,
                         strings, strsz, relro_start, relro_end, &changed);
  }
#undef CAP_ADJUST
  if (changed) walk->images++;
  return 0;
}

typedef struct cap_text_range {
  uint64_t base, start, end;
} cap_text_range;

static int cap_find_text(struct dl_phdr_info *info, size_t size, void *context) {
  (void)size;
  cap_text_range *range = (cap_text_range *)context;
  if (info->dlpi_addr != range->base) return 0;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *header = &info->dlpi_phdr[i];
    if (header->p_type != PT_LOAD || !(header->p_flags & PF_X)) continue;
    uint64_t start = info->dlpi_addr + header->p_vaddr, end = start + header->p_memsz;
    if (range->start == 0 || start < range->start) range->start = start;
    if (end > range->end) range->end = end;
  }
  return 1;
}

/// Once, before the first redirection: when swift_allocObject lives in a
/// shared libswiftCore (whose malloc calls are redirected like every
/// image's), its wrapper only hands the type to the malloc inside it; the
/// recording then needs that image's code range to drop its frames.
/// Otherwise (-static-stdlib) the nested variant counts it itself.
void cap_alloc_choose_wrappers(void) {
  static int chosen;
  if (chosen) return;
  chosen = 1;
  size_t index = cap_alloc_hook_count;
  for (size_t h = 0; h < cap_alloc_hook_count; h++) {
    if (cap_text_equal(cap_alloc_hooks[h].name, "swift_allocObject")) index = h;
  }
  if (index == cap_alloc_hook_count) return;
  void *function = __atomic_load_n(cap_alloc_hooks[index].real, __ATOMIC_ACQUIRE);
  Dl_info info;
  if (function == 0 || dladdr(function, &info) == 0 || info.dli_fname == 0) return;
  const char *base = info.dli_fname;
  for (const char *c = info.dli_fname; *c != 0; c++) {
    if (*c == '/') base = c + 1;
  }
  if (!cap_text_starts(base, "libswiftCore.so")) return;
  cap_text_range range = {(uint64_t)(uintptr_t)info.dli_fbase, 0, 0};
  dl_iterate_phdr(cap_find_text, &range);
  uint64_t address = (uint64_t)(uintptr_t)function;
  if (!(address >= range.start && address < range.end)) return;
  cap_alloc_swift_core_text_start = range.start;
  cap_alloc_swift_core_text_end = range.end;
  cap_alloc_hooks[index].hook = cap_alloc_swift_object_direct;
}

void cap_got_resolve(cap_hook_set *set) {
  for (size_t h = 0; h < set->count; h++) {
    if (__atomic_load_n(set->hooks[h].real, __ATOMIC_ACQUIRE) == 0) {
      __atomic_store_n(set->hooks[h].real, dlsym(RTLD_DEFAULT, set->hooks[h].name), __ATOMIC_RELEASE);
    }
  }
}

size_t cap_got_table_bytes(void) { return CAP_MAX_PATCHES * sizeof(cap_patch); }

void cap_got_set_table(cap_hook_set *set, void *memory, uint32_t capacity) {
  set->patches = (cap_patch *)memory;
  set->patch_capacity = memory != 0 ? capacity : 0;
  set->patch_count = 0;
}

cap_got_result cap_got_walk(cap_hook_set *set, int action) {
  cap_walk walk = cap_walk_new(set, action);
  if (action == CAP_WALK_PATCH && set->patches == 0) {
    cap_got_result none = {0, 0, -ENOMEM};
    return none;
  }
  dl_iterate_phdr(cap_walk_image, &walk);
  if (action == CAP_WALK_RESTORE) set->patch_count = 0;
  cap_got_result result = {walk.changed, walk.images, walk.error};
  return result;
}

#endif  // CAP_HAVE_SAMPLER
