extension RandomAccessCollection where Index == Int {
  /// In a collection sorted by `key`, how many leading elements have a key
  /// ≤ `value`: the index just after the last of them (0 when none). The
  /// lookups of address tables (symbols, line rows, units, functions) take
  /// the element before it.
  func countNotAfter<Key: Comparable>(_ value: Key, by key: (Element) -> Key) -> Int {
    var low = startIndex
    var high = endIndex
    while low < high {
      let mid = low + (high - low) / 2
      if key(self[mid]) <= value { low = mid + 1 } else { high = mid }
    }
    return low
  }
}
