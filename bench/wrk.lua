-- wrk script for bench/run.py: POST the JSON body in $BENCH_BODY (with $BENCH_KEY as a bearer
-- key when set) and count answers that are not a 200 whose body contains $BENCH_EXPECT (a
-- stream cut short, an error frame, a wrong reply). Prints "BENCH_BAD <n>" at the end.
-- $BENCH_HEADERS: more request headers, one "name: value" a line. Every "@ID@" in the body is
-- replaced by an id unique to the request (for runs, whose ids may not repeat).
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
local key = os.getenv("BENCH_KEY")
if key and key ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. key
end
for name, value in string.gmatch(os.getenv("BENCH_HEADERS") or "", "([^:\n]+):%s*([^\n]*)") do
  wrk.headers[name] = value
end
local expect = os.getenv("BENCH_EXPECT") or ""
local unique = wrk.body and string.find(wrk.body, "@ID@", 1, true)

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  -- Ids unique across threads and runs: the run's start time and the thread's number.
  thread:set("prefix", os.time() .. "-" .. #threads .. "-")
end

function init(args)
  bad = 0
  sent = 0
end

if unique then
  function request()
    sent = sent + 1
    local body = string.gsub(wrk.body, "@ID@", prefix .. sent)
    return wrk.format(nil, nil, nil, body)
  end
end

function response(status, headers, body)
  if status ~= 200 or (expect ~= "" and not string.find(body, expect, 1, true)) then
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local n = 0
  for _, thread in ipairs(threads) do
    n = n + thread:get("bad")
  end
  io.write(string.format("BENCH_BAD %d\n", n))
end
