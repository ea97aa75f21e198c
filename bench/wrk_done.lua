-- wrk_done.lua: used by bench/lb_bench.py. At the end of a wrk run, print one line
-- "LB_BENCH key=value ..." (microseconds, counts) instead of wrk's rounded human units.
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "LB_BENCH duration_us=%d requests=%d bytes=%d connect=%d read=%d write=%d status=%d timeout=%d"
      .. " mean_us=%.2f max_us=%d p50_us=%d p90_us=%d p99_us=%d p999_us=%d\n",
    summary.duration, summary.requests, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
end
