import AppProfiler

// profiler-bench SCENARIO [arguments]: one measurement per call; run.sh
// runs them all and compares with perf where that applies.
let arguments = Array(CommandLine.arguments.dropFirst())
func argument(_ index: Int, _ fallback: String) -> String { index < arguments.count ? arguments[index] : fallback }

switch argument(0, "help") {
case "yield":
  var options = SessionOptions()
  if argument(4, "auto") == "posix" { options.cpuEngine = .posixTimers }
  try await benchYield(
    threads: Int(argument(1, "2"))!, hertz: Int(argument(2, "1000"))!, seconds: Double(argument(3, "3"))!,
    options: options)
case "wall-cost":
  try await benchWallCost(threads: Int(argument(1, "10"))!, hertz: Int(argument(2, "1000"))!, seconds: Double(argument(3, "3"))!)
case "attribution":
  try await benchAttribution(seconds: Double(argument(1, "5"))!, readyFile: arguments.count > 2 ? arguments[2] : nil)
case "unwind-cost":
  benchUnwindCost()
case "tables":
  try await benchTables()
case "completeness":
  try await benchCompleteness()
case "encode":
  benchEncode()
case "soak":
  try await benchSoak(profiles: Int(argument(1, "1000"))!)
case "http-server":
  try await benchHTTPServer()
case "idle-server":
  try await benchIdleServer()
case "alloc-ab":
  try await benchAllocInterleaved(rounds: Int(arguments.dropFirst(1).first ?? "7") ?? 7)
case "alloc-overhead":
  try await benchAllocOverhead(
    variant: argument(1, "never"), seconds: Double(argument(2, "2"))!, rate: Int(argument(3, "524288"))!)
case "symbolize":
  try await benchSymbolize(seconds: Double(argument(1, "1"))!)
case "frames-server":
  try await benchManyFramesServer(library: argument(1, ""), chains: Int(argument(2, "100"))!)
case "async-sample-cost":
  try await benchAsyncSampleCost(depth: Int(argument(1, "30"))!, rounds: Int(argument(2, "7"))!)
case "async-throughput":
  try await benchAsyncThroughput(variant: argument(1, "none"), seconds: Double(argument(2, "2"))!)
case "task-churn":
  await benchTaskChurn(seconds: Double(argument(1, "3"))!)
case "task-dump":
  try await benchTaskDump(tasks: Int(argument(1, "10000"))!)
case "task-wall":
  try await benchTaskWall(tasks: Int(argument(1, "10000"))!)
case "task-dump-churn":
  try await benchTaskDumpChurn(dumps: Int(argument(1, "1000"))!)
case "lock-pair":
  try benchLockPair(rounds: Int(argument(1, "7"))!)
case "count-frames":
  try benchCountFrames(path: argument(1, ""))
default:
  print("usage: profiler-bench yield THREADS HZ SECONDS [auto|posix] | wall-cost THREADS HZ SECONDS | attribution SECONDS [READY_FILE] | symbolize SECONDS | frames-server LIBRARY CHAINS | count-frames SPEEDSCOPE_FILE | alloc-overhead never|after|during|always|touched SECONDS [RATE] | alloc-ab [ROUNDS] | encode | unwind-cost | tables | completeness | async-sample-cost DEPTH ROUNDS | async-throughput none|100-off|100-on|1000-off|1000-on SECONDS | task-churn SECONDS | task-dump N | task-dump-churn DUMPS | task-wall N | lock-pair ROUNDS")
}
