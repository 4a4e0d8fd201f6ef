-- wrk script: POST pre-signed Twilio webhooks, each body once per run.
-- Reads BENCH_BODIES (lines "signature<TAB>form body") and BENCH_PATH; BENCH_RATE (requests
-- per second for the whole run, 0 = as fast as possible) is split between the threads.
-- Script argument: the number of wrk threads. With BENCH_SENT set, each thread appends
-- "<line index>\t<wall-clock ms>" there as it sends a body, so that the time from webhook to
-- PBX can be measured per text.
local ffi = require("ffi")
ffi.cdef[[
  typedef struct { long tv_sec; long tv_usec; } bench_timeval;
  int gettimeofday(bench_timeval *tv, void *tz);
]]
local tv = ffi.new("bench_timeval")

local function now_ms()
  ffi.C.gettimeofday(tv, nil)
  return tonumber(tv.tv_sec) * 1000 + tonumber(tv.tv_usec) / 1000
end

local bodies_file = os.getenv("BENCH_BODIES")
local path = os.getenv("BENCH_PATH")
local rate = tonumber(os.getenv("BENCH_RATE") or "0")
local sent_path = os.getenv("BENCH_SENT")
local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  nthreads = tonumber(args[1])
  requests = {}
  lines = {}
  local n = 0
  -- Each thread takes every nthreads-th line, so no MessageSid is sent twice in a run.
  for line in io.lines(bodies_file) do
    if n % nthreads == id then
      local tab = line:find("\t", 1, true)
      local headers = {
        ["Content-Type"] = "application/x-www-form-urlencoded",
        ["X-Twilio-Signature"] = line:sub(1, tab - 1),
      }
      table.insert(requests, wrk.format("POST", path, headers, line:sub(tab + 1)))
      table.insert(lines, n)
    end
    n = n + 1
  end
  cursor = 0
  if sent_path and sent_path ~= "" then
    sent_log = io.open(sent_path .. "." .. id, "w")
    -- wrk exits without closing the threads' Lua states: nothing may wait in a buffer.
    sent_log:setvbuf("line")
  end
  if rate > 0 then
    -- One schedule per thread, a slot every thread_gap ms, claimed by whichever connection
    -- asks next: waiting for answers does not lower the offered rate (open loop while the
    -- thread has connections free).
    thread_gap = 1000 * nthreads / rate
  end
end

function delay()
  if not thread_gap then
    return 0
  end
  local now = now_ms()
  if not next_at then
    next_at = now + math.random() * thread_gap
  end
  next_at = next_at + thread_gap
  local wait = next_at - now
  if wait < 0 then
    return 0
  end
  return wait
end

function request()
  cursor = cursor + 1
  if cursor > #requests then
    cursor = 1 -- ran out: repeats are acknowledged as duplicates, the caller sizes the file
  end
  if sent_log then
    sent_log:write(lines[cursor], "\t", string.format("%.3f", now_ms()), "\n")
  end
  return requests[cursor]
end

function done(summary, latency, requests)
  io.write(string.format(
    "RESULT requests=%d duration_us=%d errors_status=%d errors_connect=%d errors_timeout=%d " ..
    "p50_us=%d p90_us=%d p99_us=%d max_us=%d\n",
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect,
    summary.errors.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
