-- wrk script for cedargate's load benchmark (bench/load.sh).
-- Env: BODY_FILE    request body; every "{{TOKEN}}" in it is replaced by the request's token
--      TOKENS_FILE  optional: one token per line; each request takes the next one, and
--                   the wrk threads take disjoint turns, so no token is sent twice until
--                   the file is used up
--      TOKEN_HEADER optional: header line for the token, such as
--                   "Authorization: Bearer {{TOKEN}}"
--      HEADERS      optional fixed headers, "Name: value" pairs separated by "|"
--      THREADS      the wrk thread count (the stride between a thread's tokens)
--      RESULT_FILE  optional: a one-line JSON summary is appended here
local next_id = 0
function setup(thread)
  thread:set("thread_id", next_id)
  next_id = next_id + 1
end

local body_template, tokens, position, stride, token_header
local fixed = {}

function init(args)
  local f = assert(io.open(os.getenv("BODY_FILE"), "rb"), "BODY_FILE not readable")
  body_template = f:read("*a")
  f:close()
  for k, v in pairs(wrk.headers) do fixed[k] = v end
  fixed["Content-Type"] = "application/json"
  local extra = os.getenv("HEADERS")
  if extra and #extra > 0 then
    for line in string.gmatch(extra, "[^|]+") do
      local k, v = string.match(line, "^%s*([^:]+):%s*(.-)%s*$")
      if k then fixed[k] = v end
    end
  end
  local tokens_file = os.getenv("TOKENS_FILE")
  if tokens_file and #tokens_file > 0 then
    tokens = {}
    for line in io.lines(tokens_file) do
      if #line > 0 then tokens[#tokens + 1] = line end
    end
    stride = tonumber(os.getenv("THREADS") or "1")
    position = (thread_id or 0) + 1
    token_header = os.getenv("TOKEN_HEADER")
  end
  wrk.method = "POST"
  wrk.body = body_template
  wrk.headers = fixed
end

function request()
  if not tokens then
    return wrk.format("POST", nil, fixed, body_template)
  end
  local token = tokens[position]
  position = position + stride
  if position > #tokens then position = (thread_id or 0) + 1 end
  local headers = {}
  for k, v in pairs(fixed) do headers[k] = v end
  if token_header and #token_header > 0 then
    local k, v = string.match(token_header, "^%s*([^:]+):%s*(.-)%s*$")
    headers[k] = string.gsub(v, "{{TOKEN}}", token)
  end
  local body = string.gsub(body_template, "{{TOKEN}}", token)
  return wrk.format("POST", nil, headers, body)
end

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
               + summary.errors.status + summary.errors.timeout
  local line = string.format(
    '{"requests":%d,"duration_s":%.3f,"rps":%.1f,"p50_us":%d,"p99_us":%d,"max_us":%d,"errors":%d,"non2xx":%d}',
    summary.requests, secs, summary.requests / secs,
    latency:percentile(50), latency:percentile(99), latency.max, errors, summary.errors.status)
  io.write("RESULT " .. line .. "\n")
  local result_file = os.getenv("RESULT_FILE")
  if result_file and #result_file > 0 then
    local o = io.open(result_file, "a"); o:write(line .. "\n"); o:close()
  end
end
