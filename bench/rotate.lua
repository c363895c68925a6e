-- wrk script for bench/run: each request takes the next "path<TAB>token" line of $TARGETS, so
-- the load rotates over many partners with real tokens. A response counts as an error unless it
-- is HTTP 200 with envelope code 200 (with $ACCEPT_ENCODING set, the header is sent and the
-- answer must be HTTP 200 in that coding). done() prints one RESULT line for bench/run to read.

local lines = {}
for line in io.lines(os.getenv("TARGETS")) do
  lines[#lines + 1] = line
end

local threads = {}
function setup(thread)
  thread:set("offset", #threads)
  threads[#threads + 1] = thread
end

local accept_encoding = os.getenv("ACCEPT_ENCODING")
if accept_encoding == "" then accept_encoding = nil end
local targets, next_target = {}, 0
bad = 0 -- global: done() reads it from every thread

-- Requests are formatted per thread, once wrk has set the Host header.
function init(args)
  for _, line in ipairs(lines) do
    local path, token = line:match("^([^\t]+)\t(.+)$")
    local headers = { ["Authorization"] = "Bearer " .. token }
    if accept_encoding then headers["Accept-Encoding"] = accept_encoding end
    targets[#targets + 1] = wrk.format("GET", path, headers)
  end
  next_target = offset
end

function request()
  next_target = next_target % #targets + 1
  return targets[next_target]
end

function response(status, headers, body)
  local ok
  if accept_encoding then
    local coding = headers["content-encoding"] or headers["Content-Encoding"]
    ok = status == 200 and coding == accept_encoding
  else
    ok = status == 200 and body:find('"code":200,', 1, true)
  end
  if not ok then
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local errors = 0
  for _, thread in ipairs(threads) do
    errors = errors + thread:get("bad")
  end
  local e = summary.errors
  errors = errors + e.connect + e.read + e.write + e.timeout
  io.write(string.format(
    "RESULT requests=%d seconds=%.3f p50_ms=%.2f p99_ms=%.2f max_ms=%.2f errors=%d\n",
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, errors))
end
