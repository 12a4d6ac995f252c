-- Load for the reader-reactions benchmark. SCENARIO (environment) picks the request mix:
--   healthz, write-hot, write-spread, get, batch, mix, stats
-- Every write uses a visitor id never used before (it carries a nonce drawn per run, so a later
-- run never reuses an earlier one's ids), so after a run the rows written must equal the writes
-- acknowledged. HOT_ARTICLE (environment, default "hot") names the article write-hot writes to:
-- the suite gives each hot scenario its own, so that each one's check counts only its rows. Clients come from random addresses via X-Forwarded-For (the service
-- trusts 127.0.0.1), so rate limiting works per client as in production.

local scenario = os.getenv("SCENARIO") or "healthz"
local spread = tonumber(os.getenv("SPREAD_ARTICLES") or "10000")
local hot_article = os.getenv("HOT_ARTICLE") or "hot"
local reactions = { "like", "dislike", "love", "funny", "angry", "sad", "wow" }
local threads = {}
local tid = 0

function setup(thread)
  tid = tid + 1
  thread:set("tid", tid)
  table.insert(threads, thread)
end

function init(args)
  tid = tonumber(wrk.thread:get("tid"))
  math.randomseed(tid * 7919 + os.time())
  nonce = math.random(1, 2147483647)
  build_pools()
  counter = 0
  acked = 0
  acked_writes = 0
  failed = 0
end

-- Request pieces are drawn from pools built once per thread, so that the load generator spends
-- its time sending requests rather than formatting them.
ips, batches, bodies = {}, {}, {}

function build_pools()
  -- 100.64.0.0/10 (carrier-grade NAT space): 16,384 clients per wrk thread
  for i = 1, 16384 do
    ips[i] = string.format("100.%d.%d.%d", math.random(64, 127), math.random(0, 255), math.random(1, 254))
  end
  for i = 1, 1024 do
    local ids = {}
    for j = 1, 50 do
      ids[j] = "article_id=spread-" .. math.random(1, spread)
    end
    batches[i] = "/v1/reactions?" .. table.concat(ids, "&")
  end
  for i, reaction in ipairs(reactions) do
    bodies[i] = '{"reaction":"' .. reaction .. '"}'
  end
end

local function client_ip()
  return ips[math.random(1, #ips)]
end

local function write(article)
  counter = counter + 1
  local headers = {
    ["Content-Type"] = "application/json",
    ["X-Visitor-Id"] = string.format("bench-%d-t%d-%d", nonce, tid, counter),
    ["X-Forwarded-For"] = client_ip(),
  }
  return wrk.format("PUT", "/v1/articles/" .. article .. "/reaction", headers, bodies[math.random(1, #bodies)])
end

local function read(path)
  return wrk.format("GET", path, { ["X-Forwarded-For"] = client_ip() })
end

local function spread_article()
  return "spread-" .. math.random(1, spread)
end

local function batch_path()
  return batches[math.random(1, #batches)]
end

function request()
  if scenario == "write-hot" then
    return write(hot_article)
  elseif scenario == "write-spread" then
    return write(spread_article())
  elseif scenario == "get" then
    return read("/v1/articles/hot/reactions")
  elseif scenario == "batch" then
    return read(batch_path())
  elseif scenario == "stats" then
    -- Dashboards: the day's top articles overall, then by one reaction, then site totals.
    local pick = math.random(1, 3)
    if pick == 1 then
      return read("/v1/stats/top?limit=10")
    elseif pick == 2 then
      return read("/v1/stats/top?limit=10&reaction=" .. reactions[math.random(1, #reactions)])
    end
    return read("/v1/stats/totals")
  elseif scenario == "mix" then
    if math.random(1, 10) == 1 then
      return write("mix-" .. math.random(1, 100))
    end
    return read("/v1/articles/mix-" .. math.random(1, 100) .. "/reactions")
  else
    return read("/healthz")
  end
end

function response(status, headers, body)
  if status == 200 or status == 304 then
    acked = acked + 1
    -- A write's answer names the writer's reaction; anonymous reads answer null.
    if string.find(body, '"viewer_reaction":"', 1, true) then
      acked_writes = acked_writes + 1
    end
  else
    failed = failed + 1
  end
end

function done(summary, latency, requests)
  local ok, writes, bad = 0, 0, 0
  for _, thread in ipairs(threads) do
    ok = ok + thread:get("acked")
    writes = writes + thread:get("acked_writes")
    bad = bad + thread:get("failed")
  end
  io.write(string.format(
    "RESULT rps=%.0f p50_ms=%.2f p99_ms=%.2f ok=%d acked_writes=%d failed=%d socket_errors=%d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    ok, writes, bad,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
