-- wrk script: send one GraphQL request and check every answer against the expected body.
-- The expected body has each "ageSeconds" value replaced by 0 (the only field that changes
-- from one answer to the next); a non-200 status or any other difference is a wrong answer.
-- Environment: BENCH_METHOD, BENCH_PATH, BENCH_BODY (file), BENCH_EXPECTED (file),
-- BENCH_HEADERS (lines "name: value").

local threads = {}

local function read(path)
  local file = assert(io.open(path, "rb"))
  local text = file:read("*a")
  file:close()
  return text
end

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  wrong = 0
  checked = 0
  expected = read(os.getenv("BENCH_EXPECTED"))
  local body = os.getenv("BENCH_BODY") or ""
  local headers = {}
  for line in (os.getenv("BENCH_HEADERS") or ""):gmatch("[^\n]+") do
    local name, value = line:match("^([^:]+):%s*(.*)$")
    headers[name] = value
  end
  request_bytes = wrk.format(
    os.getenv("BENCH_METHOD") or "POST",
    os.getenv("BENCH_PATH") or "/graphql",
    headers,
    body ~= "" and read(body) or nil
  )
end

function request()
  return request_bytes
end

function response(status, headers, body)
  checked = checked + 1
  if status ~= 200 then
    wrong = wrong + 1
    return
  end
  local normalised = body:gsub('"ageSeconds":[%-%d%.eE%+]+', '"ageSeconds":0')
  if normalised ~= expected then
    wrong = wrong + 1
  end
end

function done(summary, latency, requests)
  local total_wrong, total_checked = 0, 0
  for _, thread in ipairs(threads) do
    total_wrong = total_wrong + thread:get("wrong")
    total_checked = total_checked + thread:get("checked")
  end
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "seconds": %.6f, "p50_ms": %.3f, "p99_ms": %.3f, "errors": %d, "wrong": %d, "checked": %d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, e.connect + e.read + e.write + e.status + e.timeout,
    total_wrong, total_checked))
end
