#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The directory holding sockets and discovery records. It must be ours:
/// a directory (not a symlink someone planted), owned by this user, closed to
/// others (0700). Anything else is refused, not repaired behind the user's back.
enum RuntimeDirectory {
  static func prepare(_ path: String) throws(ProfileServerError) {
    var info = stat()
    if lstat(path, &info) != 0 {
      guard errno == ENOENT else {
        throw .unsafeDirectory(path: path, reason: "cannot stat: \(String(cString: strerror(errno)))")
      }
      if mkdir(path, 0o700) != 0 && errno != EEXIST {
        throw .unsafeDirectory(path: path, reason: "cannot create: \(String(cString: strerror(errno)))")
      }
      guard lstat(path, &info) == 0 else {
        throw .unsafeDirectory(path: path, reason: "vanished after creation")
      }
    }
    let type = info.st_mode & S_IFMT
    if type == S_IFLNK {
      throw .unsafeDirectory(path: path, reason: "is a symbolic link; refusing to follow it")
    }
    guard type == S_IFDIR else {
      throw .unsafeDirectory(path: path, reason: "is not a directory")
    }
    guard info.st_uid == geteuid() else {
      throw .unsafeDirectory(path: path, reason: "is owned by uid \(info.st_uid), not by this process's uid \(geteuid())")
    }
    if info.st_mode & 0o077 != 0 {
      throw .unsafeDirectory(
        path: path, reason: "is accessible to other users (mode \(String(info.st_mode & 0o777, radix: 8))); make it 0700")
    }
  }
}
