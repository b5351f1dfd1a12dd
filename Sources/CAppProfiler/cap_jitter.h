// Randomized sampling intervals. A fixed period meets work that repeats at
// a period dividing it at the same few phases every time, so the answer
// depends on where the run happened to start (a thread alternating 3 ms and
// 1 ms of CPU gave 50 % to 100 % for its 75 % function at a fixed 10 ms).
// Drawing each interval afresh, uniformly in [mean/2, 3·mean/2), keeps the
// mean rate and spreads the sample points over every phase. Pure
// arithmetic: callable from the signal handler.
#ifndef CAP_JITTER_H
#define CAP_JITTER_H

#include <stdint.h>

/// A seed from any value (SplitMix64's finalizer), never 0.
static inline uint64_t cap_jitter_seed(uint64_t value) {
  uint64_t z = value + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return z != 0 ? z : 1;
}

/// The next interval, uniform in [mean/2, mean/2 + mean), from `state`
/// (xorshift64*, advanced).
static inline uint64_t cap_jittered_interval(uint64_t *state, uint64_t mean) {
  uint64_t x = *state != 0 ? *state : 1;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *state = x;
  uint64_t random = x * 0x2545F4914F6CDD1Dull;
  uint64_t offset = (uint64_t)(((unsigned __int128)random * mean) >> 64);  // [0, mean)
  uint64_t interval = mean / 2 + offset;
  return interval != 0 ? interval : 1;
}

#endif
