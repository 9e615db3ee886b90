-- wrk script: POST /invocations, top-10 for a random user per request (one user per request).
-- Users are drawn from NCF_USERS (default 6040, MovieLens-1M's users "0".."6039").
local num_users = tonumber(os.getenv("NCF_USERS") or "6040")
local k = tonumber(os.getenv("NCF_K") or "10")

function setup(thread)
  thread:set("seed", math.random(1, 1000000))
end

function init(args)
  math.randomseed(seed)
end

function request()
  local body = string.format('{"user_id": "%d", "k": %d}', math.random(0, num_users - 1), k)
  return wrk.format("POST", "/invocations", {["Content-Type"] = "application/json"}, body)
end

function done(summary, latency, requests)
  io.write(string.format(
    "RESULT requests=%d errors=%d duration_s=%.3f rps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f\n",
    summary.requests,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000))
end
