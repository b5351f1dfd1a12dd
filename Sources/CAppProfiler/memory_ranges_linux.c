// Memory-range snapshots: the handler's stack bounds. The ticker reads
// /proc/self/maps into the set of the double buffer the handlers are not
// reading, then switches them over. Not on the signal path.
#define _GNU_SOURCE
#include "cap_platform.h"
#if CAP_HAVE_SAMPLER
#include "cap_sampler.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>


/// Reads /proc/self/maps into the set the handler is not using, keeping
/// readable+writable mappings (every thread stack is one) merged when adjacent.
/// A line looks like:
///   7f2c5a1ff000-7f2c5a9ff000 rw-p 00000000 00:00 0
void cap_ranges_refresh(cap_session *s) {
  uint32_t next = (atomic_load(&s->current_ranges) + 1) & 1;
  cap_range_set *set = &s->range_sets[next];
  while (atomic_load(&set->readers) != 0) {
    struct timespec pause = {0, 20000};
    nanosleep(&pause, 0);
  }
  int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  size_t capacity = 1 << 16, used = 0;
  char *text = malloc(capacity);
  while (text != 0) {
    if (capacity - used < 4096) {
      char *grown = realloc(text, capacity * 2);
      if (grown == 0) break;
      text = grown;
      capacity *= 2;
    }
    ssize_t n = read(fd, text + used, capacity - used - 1);
    if (n <= 0) break;
    used += (size_t)n;
  }
  close(fd);
  if (text == 0) return;
  text[used] = 0;

  uint32_t count = 0;
  char *line = text;
  while (*line != 0 && count < CAP_MAX_RANGES) {
    char *end_of_line = strchr(line, '\n');
    if (end_of_line != 0) *end_of_line = 0;
    unsigned long long start = 0, end = 0;
    char perms[8] = {0};
    if (sscanf(line, "%llx-%llx %7s", &start, &end, perms) == 3 && perms[0] == 'r' &&
        perms[1] == 'w') {
      if (count > 0 && set->ranges[count - 1].end == start) {
        set->ranges[count - 1].end = end;
      } else {
        set->ranges[count].start = start;
        set->ranges[count].end = end;
        count++;
      }
    }
    if (end_of_line == 0) break;
    line = end_of_line + 1;
  }
  free(text);
  set->count = count;
  atomic_store(&s->current_ranges, next);
  atomic_store(&s->ranges_stale, 0);
}

#endif  // CAP_HAVE_SAMPLER
