-- wrk script: send one GraphQL request and check every answer against the expected body.
-- The expected body has each "ageSeconds" value replaced by 0 (the only field that changes
-- from one answer to the next); a non-200 status or any other difference is a wrong answer.
-- Environment: BENCH_METHOD, BENCH_PATH, BENCH_BODY (file), BENCH_EXPECTED (file),
-- BENCH_HEADERS (lines "name: value"); BENCH_UNIQUE_EVERY=N makes every Nth request one
-- the server has never seen, with the same answer: BENCH_UNIQUE=name gives the operation
-- (named BENCH_UNIQUE_NAME) a new name, BENCH_UNIQUE=variables adds a variable the
-- operation does not use; either way unique to this run (BENCH_RUN) and request.
-- "fetchedAt" values are normalised too: replicas or workers each fetched their own copy.
-- BENCH_KEYS_FILE (one API key a line) sends the keys in turn, one per request.

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
  method = os.getenv("BENCH_METHOD") or "POST"
  path = os.getenv("BENCH_PATH") or "/graphql"
  request_headers = headers
  request_body = body ~= "" and read(body) or nil
  request_bytes = wrk.format(method, path, headers, request_body)
  unique_every = tonumber(os.getenv("BENCH_UNIQUE_EVERY") or "0")
  unique_name = os.getenv("BENCH_UNIQUE_NAME") or ""
  unique_mode = os.getenv("BENCH_UNIQUE") or "name"
  run = os.getenv("BENCH_RUN") or "0"
  sent = 0
  keys = {}
  local keys_file = os.getenv("BENCH_KEYS_FILE") or ""
  if keys_file ~= "" then
    for key in read(keys_file):gmatch("[^\n]+") do
      table.insert(keys, key)
    end
  end
  key_index = 0
end

function request()
  sent = sent + 1
  local body = request_body
  local changed = false
  if unique_every > 0 and sent % unique_every == 0 then
    local suffix = "R" .. run .. "N" .. sent
    if unique_mode == "variables" then
      body = request_body:gsub('"variables": {', '"variables": {"n": "' .. suffix .. '", ', 1)
    else
      body = request_body:gsub(unique_name, unique_name .. suffix, 1)
    end
    changed = true
  end
  if #keys > 0 then
    -- Callers in turn: each request carries the next key of BENCH_KEYS_FILE.
    key_index = key_index % #keys + 1
    request_headers["x-api-key"] = keys[key_index]
    changed = true
  end
  if changed then
    return wrk.format(method, path, request_headers, body)
  end
  return request_bytes
end

function response(status, headers, body)
  checked = checked + 1
  if status ~= 200 then
    wrong = wrong + 1
    return
  end
  local normalised = body:gsub('"ageSeconds":[%-%d%.eE%+]+', '"ageSeconds":0')
  normalised = normalised:gsub('"fetchedAt":"[^"]*"', '"fetchedAt":""')
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
